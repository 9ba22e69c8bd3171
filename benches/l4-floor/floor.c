/*
 * floor: the least work a TCP proxy that moves bytes through its own sockets can do per
 * message, to measure the ceiling of "L4 requests per LB CPU-second" on this machine.
 * Not Portico and not for use: one thread, no timeouts, no health checks, no metrics, no
 * logging, one 16 KiB buffer per direction, round robin per connection.
 *
 * Per message it makes the same calls any readiness-based proxy must: one read, one write
 * (a read shorter than the buffer proves the socket drained under edge-triggered epoll, so
 * no read that could only return EAGAIN), and each socket is registered once for both
 * directions (no epoll_ctl per message). That is what Portico's L4 copy does too, so the
 * difference between the two is user space only.
 *
 *   cc -O2 -o floor floor.c && ./floor 127.0.0.1:18080 127.0.0.1:31001,127.0.0.1:31002
 *
 * SIGTERM ends it. See README.md.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUF 16384
#define MAX_BACKENDS 64

/* One socket of a pair; `peer` is the other side. Bytes read from this socket and not yet
 * written to the peer wait in buf[off..len]. */
struct side {
    int fd;
    struct side *peer;
    struct pair *pair;
    int eof;      /* this socket's reading end is done (read 0) */
    int rdhup;    /* the peer's FIN has arrived (EPOLLRDHUP): read on to the end */
    size_t off, len;
    char buf[BUF];
};

struct pair {
    struct side s[2];
    int closed;
};

static struct sockaddr_in backends[MAX_BACKENDS];
static int n_backends, next_backend, epfd;
/* A sentinel for the listening socket in epoll's data. */
static struct side listener;

static int parse_addr(const char *text, struct sockaddr_in *out) {
    char host[64];
    const char *colon = strrchr(text, ':');
    if (!colon || (size_t)(colon - text) >= sizeof host) return -1;
    memcpy(host, text, colon - text);
    host[colon - text] = 0;
    memset(out, 0, sizeof *out);
    out->sin_family = AF_INET;
    out->sin_port = htons((unsigned short)atoi(colon + 1));
    return inet_pton(AF_INET, host, &out->sin_addr) == 1 ? 0 : -1;
}

static void close_pair(struct pair *p) {
    if (p->closed) return;
    p->closed = 1;
    close(p->s[0].fd);
    close(p->s[1].fd);
    /* Events for these sockets may still be in the current epoll_wait batch: free at the
     * end of the batch. */
}

/* Writes what `from` holds to its peer. Returns 0 when all is written, 1 when the peer's
 * send buffer is full (wait for EPOLLOUT), -1 on error. */
static int flush(struct side *from) {
    while (from->off < from->len) {
        ssize_t n = send(from->peer->fd, from->buf + from->off, from->len - from->off, MSG_NOSIGNAL);
        if (n > 0) {
            from->off += (size_t)n;
        } else if (n < 0 && errno == EAGAIN) {
            return 1;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else {
            return -1;
        }
    }
    from->off = from->len = 0;
    return 0;
}

/* Moves bytes from `src` to its peer until src is drained or the peer is full. */
static int pump(struct side *src) {
    for (;;) {
        int f = flush(src);
        if (f != 0) return f;
        if (src->eof) return 0;
        ssize_t n = read(src->fd, src->buf, BUF);
        if (n > 0) {
            src->len = (size_t)n;
            f = flush(src);
            if (f != 0) return f;
            /* Drained: the next byte raises a new edge. A FIN behind the bytes raises none of
             * its own once EPOLLRDHUP was reported, so then the read goes on to the 0. */
            if ((size_t)n < BUF && !src->rdhup) return 0;
        } else if (n == 0) {
            src->eof = 1;
            shutdown(src->peer->fd, SHUT_WR);
            return 0;
        } else if (errno == EAGAIN) {
            return 0;
        } else if (errno != EINTR) {
            return -1;
        }
    }
}

static int add(struct side *s) {
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.ptr = s};
    return epoll_ctl(epfd, EPOLL_CTL_ADD, s->fd, &ev);
}

static void accept_all(int lfd) {
    for (;;) {
        int c = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (c < 0) {
            /* The listener is edge-triggered: only EAGAIN means the queue is empty. */
            if (errno == EINTR || errno == ECONNABORTED) continue;
            return;
        }
        int b = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (b < 0) {
            close(c);
            return;
        }
        int one = 1;
        setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        setsockopt(b, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        struct sockaddr_in *to = &backends[next_backend];
        next_backend = (next_backend + 1) % n_backends;
        if (connect(b, (struct sockaddr *)to, sizeof *to) < 0 && errno != EINPROGRESS) {
            close(c);
            close(b);
            continue;
        }
        struct pair *p = calloc(1, sizeof *p);
        if (!p) {
            close(c);
            close(b);
            continue;
        }
        p->s[0].fd = c;
        p->s[1].fd = b;
        for (int i = 0; i < 2; i++) {
            p->s[i].peer = &p->s[1 - i];
            p->s[i].pair = p;
        }
        if (add(&p->s[0]) < 0 || add(&p->s[1]) < 0) {
            close(c); /* closing removes a registered descriptor from epoll */
            close(b);
            free(p);
        }
    }
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s LISTEN_IP:PORT BACKEND_IP:PORT[,...]\n", argv[0]);
        return 2;
    }
    struct sockaddr_in laddr;
    if (parse_addr(argv[1], &laddr) < 0) {
        fprintf(stderr, "bad listen address %s\n", argv[1]);
        return 2;
    }
    for (char *tok = strtok(argv[2], ","); tok && n_backends < MAX_BACKENDS; tok = strtok(NULL, ",")) {
        if (parse_addr(tok, &backends[n_backends++]) < 0) {
            fprintf(stderr, "bad backend address %s\n", tok);
            return 2;
        }
    }
    if (n_backends == 0) return 2;
    signal(SIGPIPE, SIG_IGN);

    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(lfd, (struct sockaddr *)&laddr, sizeof laddr) < 0 || listen(lfd, 1024) < 0) {
        perror("bind/listen");
        return 1;
    }
    epfd = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event lev = {.events = EPOLLIN | EPOLLET, .data.ptr = &listener};
    epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &lev);

    struct epoll_event events[256];
    struct pair *dead[512];
    for (;;) {
        int n = epoll_wait(epfd, events, 256, -1);
        if (n < 0) {
            if (errno == EINTR) continue;
            perror("epoll_wait");
            return 1;
        }
        int n_dead = 0;
        for (int i = 0; i < n; i++) {
            struct side *s = events[i].data.ptr;
            if (s == &listener) {
                accept_all(lfd);
                continue;
            }
            struct pair *p = s->pair;
            if (p->closed) continue;
            int failed = 0;
            if (events[i].events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) s->rdhup = 1;
            /* Readable, and holding nothing for the peer: move this socket's bytes on. A
             * side still holding bytes waits for the peer's EPOLLOUT. */
            if ((events[i].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) && s->off == s->len)
                failed |= pump(s) < 0;
            /* Writable, and the peer holds bytes for this socket: they go now, then the peer's
             * reading goes on. A writable edge with nothing held costs no call. */
            if (!failed && (events[i].events & EPOLLOUT) && s->peer->off < s->peer->len)
                failed |= pump(s->peer) < 0;
            if (failed || (events[i].events & EPOLLERR) || (s->eof && s->peer->eof && s->off == s->len &&
                                                           s->peer->off == s->peer->len)) {
                close_pair(p);
                if (n_dead < (int)(sizeof dead / sizeof dead[0])) dead[n_dead++] = p;
            }
        }
        for (int i = 0; i < n_dead; i++) free(dead[i]);
    }
}
