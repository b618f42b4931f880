/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Kernel resets at a paced rate on loopback, for bench/event_path.py. In C so that the harness
 * costs the kernel's work and little else (a Python loop spent about 6 us per connect on top of
 * the kernel's 20, on a machine of 2 cores shared with the agent it measures).
 *
 *     refused_connects connect|syn RATE SECONDS PORT
 *
 * connect: a TCP connect to closed PORT, refused; the kernel sends a RST and the connecting
 *          socket receives it: two tcpreset events (nosock, receive), about 20 us of kernel time.
 * syn:     SYN segments to closed PORT from a raw socket, 64 per sendmmsg(2), source ports
 *          cycling; the kernel answers each with a RST, which reaches no socket: one event
 *          (nosock) each, for a few us.
 *
 * RATE is events per second. Prints the events caused, then the CPU seconds this process used.
 */
#define _GNU_SOURCE /* sendmmsg */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BURST 64

struct segment {
	struct iphdr ip;
	struct tcphdr tcp;
};

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static unsigned short tcp_checksum(const struct segment *s)
{
	const unsigned short *p = (const unsigned short *)&s->tcp;
	unsigned long sum = 0;
	size_t i;

	sum += (s->ip.saddr >> 16) + (s->ip.saddr & 0xffff);
	sum += (s->ip.daddr >> 16) + (s->ip.daddr & 0xffff);
	sum += htons(IPPROTO_TCP) + htons(sizeof(s->tcp));
	for (i = 0; i < sizeof(s->tcp) / 2; i++)
		sum += p[i];
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return ~sum;
}

static int refused_connects(struct sockaddr_in *to, unsigned long count)
{
	for (unsigned long i = 0; i < count; i++) {
		int fd = socket(AF_INET, SOCK_STREAM, 0);

		if (fd < 0) {
			perror("socket");
			return -1;
		}
		if (connect(fd, (struct sockaddr *)to, sizeof(*to)) == 0 || errno != ECONNREFUSED) {
			fprintf(stderr, "connect to port %d: not refused (%d)\n", ntohs(to->sin_port), errno);
			return -1;
		}
		close(fd);
	}
	return 0;
}

static int syns(int fd, struct sockaddr_in *to, unsigned long count, unsigned long *seq)
{
	static struct segment segs[BURST];
	static struct mmsghdr msgs[BURST];
	static struct iovec iov[BURST];

	while (count) {
		unsigned int n = count < BURST ? count : BURST, i;

		for (i = 0; i < n; i++, (*seq)++) {
			struct segment *s = &segs[i];

			memset(s, 0, sizeof(*s));
			s->ip.version = 4;
			s->ip.ihl = 5;
			s->ip.ttl = 64;
			s->ip.protocol = IPPROTO_TCP;
			s->ip.saddr = to->sin_addr.s_addr;
			s->ip.daddr = to->sin_addr.s_addr;
			s->tcp.source = htons(1024 + *seq % 64000);
			s->tcp.dest = to->sin_port;
			s->tcp.seq = htonl(*seq);
			s->tcp.doff = 5;
			s->tcp.syn = 1;
			s->tcp.window = htons(1024);
			s->tcp.check = tcp_checksum(s);
			iov[i] = (struct iovec){ .iov_base = s, .iov_len = sizeof(*s) };
			msgs[i] = (struct mmsghdr){ .msg_hdr = { .msg_name = to, .msg_namelen = sizeof(*to),
								 .msg_iov = &iov[i], .msg_iovlen = 1 } };
		}
		for (i = 0; i < n;) {
			int sent = sendmmsg(fd, msgs + i, n - i, 0);

			if (sent < 0) {
				perror("sendmmsg");
				return -1;
			}
			i += sent;
		}
		count -= n;
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct sockaddr_in to = { .sin_family = AF_INET };
	struct timespec tick = { .tv_nsec = 500000 };
	unsigned long n = 0, due, seq = 0, per_event;
	double rate, seconds, start;
	struct rusage ru;
	int syn, fd = -1;

	if (argc != 5 || (strcmp(argv[1], "connect") && strcmp(argv[1], "syn"))) {
		fprintf(stderr, "usage: %s connect|syn RATE SECONDS PORT\n", argv[0]);
		return 2;
	}
	syn = !strcmp(argv[1], "syn");
	per_event = syn ? 1 : 2;
	rate = atof(argv[2]);
	seconds = atof(argv[3]);
	to.sin_port = htons(atoi(argv[4]));
	to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (syn) {
		fd = socket(AF_INET, SOCK_RAW, IPPROTO_RAW);
		if (fd < 0) {
			perror("raw socket (needs CAP_NET_RAW)");
			return 1;
		}
	}
	start = now();
	for (;;) {
		double elapsed = now() - start;

		if (elapsed >= seconds)
			break;
		due = (unsigned long)(elapsed * rate) / per_event * per_event;
		if (due > n) {
			if (syn ? syns(fd, &to, due - n, &seq) : refused_connects(&to, (due - n) / 2))
				return 1;
			n = due;
		}
		nanosleep(&tick, NULL);
	}
	getrusage(RUSAGE_SELF, &ru);
	printf("%lu\n%.3f\n", n, ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec
	       + ru.ru_stime.tv_usec / 1e6);
	return 0;
}
