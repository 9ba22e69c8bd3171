import asyncio, resource, sys
resource.setrlimit(resource.RLIMIT_NOFILE, (20000, 20000))
held = []
async def handle(r, w):
    held.append(w)
    try:
        await r.read()          # until the client (the LB) closes
    finally:
        w.close()
async def main():
    srv = await asyncio.start_server(handle, "127.0.0.1", int(sys.argv[1]), backlog=4096)
    async with srv: await srv.serve_forever()
asyncio.run(main())
