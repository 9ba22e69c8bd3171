# Holds N idle TCP connections through a load balancer to a backend that accepts and keeps them;
# prints the LB's VmRSS before and after. Loopback only; bounded in count and time.
import asyncio, os, resource, socket, subprocess, sys, time
resource.setrlimit(resource.RLIMIT_NOFILE, (20000, 20000))
N = int(sys.argv[1]); LB_PORT = int(sys.argv[2]); LB_PID = int(sys.argv[3])
def rss(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS"): return int(line.split()[1])
before = rss(LB_PID)
socks = []
t0 = time.time()
for i in range(N):
    s = socket.socket(); s.settimeout(5)
    s.connect(("127.0.0.1", LB_PORT)); socks.append(s)
    if time.time() - t0 > 120: break
time.sleep(2)
after = rss(LB_PID)
print(f"connections={len(socks)} rss_before_kib={before} rss_after_kib={after} per_conn_kib={(after-before)/max(1,len(socks)):.2f}")
for s in socks: s.close()
