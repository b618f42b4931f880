// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-only
/*
 * virtcmdlatency: latency of virtio-net control-queue commands (set MAC, RX mode, number of
 * queues, VLAN filters, offloads, coalescing...) per (namespace, interface, class); see
 * virtcmdlatency.h.
 *
 *   entry -> return of virtnet_send_command_reply() (or, before it existed, of
 *   virtnet_send_command()): the command sent on the control virtqueue, the device notified,
 *   and the driver busy-waiting for the device's answer.
 *
 * No tracepoint is anywhere near, so only function hooks can see it: the candidates of "entry"
 * and "exit" are the programs at the end of this file (bpf/README.md). Since Linux 6.10 the body is virtnet_send_command_reply() and virtnet_send_command() a thin
 * wrapper the compiler may inline (on the 6.18 development kernel it is not in kallsyms or BTF
 * at all). A kernel without kprobes where fentry cannot load gets nothing: the probe is then
 * unavailable, and says why.
 *
 * In flight: entry stores the start per thread (in-flight table by pid_tgid): a call runs on one
 * thread from entry to return (it waits for the device's answer by polling).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include "maps.bpf.h"
#include "netns.bpf.h"
#include "events.bpf.h"
#include "latency.bpf.h"
#include "virtcmdlatency.h"

/* Settings (set between open and load). */
const volatile bool targ_emit = false;                             /* send events */
const volatile __u64 targ_threshold_ns = VIRTCMDLATENCY_SLOW_NS;   /* events above this */

DECLARE_LATENCY_HISTS(struct virtcmdlatency_key, struct virtcmdlatency_value,
		      VIRTCMDLATENCY_MAX_HISTS);

/* drivers/net/virtio_net.c's private struct: only the member read here (CO-RE, so a kernel
 * whose vmlinux BTF lacks it, virtio_net being a module, resolves it from the module's BTF). */
struct virtnet_info___x {
	struct net_device *dev;
} __attribute__((preserve_access_index));

struct call {
	__u64 start_ns;
	__u64 dev;
	struct netns_id netns;
	__u32 ifindex;
	__u8 cls;
	__u8 cmd;
};

DECLARE_INFLIGHT(calls, __u64, struct call, VIRTCMDLATENCY_MAX_INFLIGHT);

BTF_EXPORT(struct virtcmdlatency_event, virtcmdlatency_event);
BTF_EXPORT(enum virtcmdlatency_event_type, virtcmdlatency_event_type);
BTF_EXPORT(struct latency_hist, latency_hist);
BTF_EXPORT(enum inflight_stat, inflight_stat);

static __always_inline int handle_entry(const struct virtnet_info___x *vi, __u8 cls, __u8 cmd)
{
	__u64 tid = bpf_get_current_pid_tgid();
	struct net_device *dev;
	struct call c = {};

	if (!vi)
		return 0;
	dev = BPF_CORE_READ(vi, dev);
	c.start_ns = bpf_ktime_get_ns();
	c.dev = (__u64)dev;
	c.netns = net_id(false, BPF_CORE_READ(dev, nd_net.net));
	c.ifindex = BPF_CORE_READ(dev, ifindex);
	c.cls = cls;
	c.cmd = cmd;
	calls_start(&tid, &c);
	return 0;
}

static __always_inline int handle_exit(void)
{
	__u64 tid = bpf_get_current_pid_tgid(), now, delta;
	struct virtcmdlatency_key key = {};
	struct virtcmdlatency_value *v;
	struct virtcmdlatency_event *e;
	const struct net_device *dev;
	struct call copy;
	__u32 type;

	if (!calls_get(&tid, &copy)) {
		inflight_count(INFLIGHT_UNMATCHED);
		return 0;
	}
	calls_end(&tid);
	now = bpf_ktime_get_ns();
	delta = now > copy.start_ns ? now - copy.start_ns : 0;
	dev = (const struct net_device *)copy.dev;
	key.netns = copy.netns.inum;
	key.netns_cookie = copy.netns.cookie;
	key.ifindex = copy.ifindex;
	key.cls = copy.cls;
	v = hists_lookup(&key);
	if (v) {
		if (!v->ifname[0])
			BPF_CORE_READ_STR_INTO(&v->ifname, dev, name);
		latency_add(&v->hist, delta, VIRTCMDLATENCY_SLOW_NS, VIRTCMDLATENCY_SLOW100_NS);
	}
	if (!targ_emit || delta <= targ_threshold_ns)
		return 0;
	type = delta > VIRTCMDLATENCY_SLOW100_NS ? VIRTCMDEXCUTE_100MS : VIRTCMDEXCUTE;
	e = event_reserve(struct virtcmdlatency_event, copy.netns.inum, type, 0);
	if (!e)
		return 0;
	e->latency_ns = delta;
	e->pid = tid >> 32;
	e->cpu = bpf_get_smp_processor_id();
	e->ifindex = copy.ifindex;
	e->cls = copy.cls;
	e->cmd = copy.cmd;
	BPF_CORE_READ_STR_INTO(&e->ifname, dev, name);
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	event_submit(e);
	return 0;
}

/* hook "entry" */

SEC("fentry/virtnet_send_command_reply")
int BPF_PROG(virtcmdlatency_entry_reply_fentry, struct virtnet_info___x *vi, u8 cls, u8 cmd)
{
	return handle_entry(vi, cls, cmd);
}

SEC("fentry/virtnet_send_command")
int BPF_PROG(virtcmdlatency_entry_fentry, struct virtnet_info___x *vi, u8 cls, u8 cmd)
{
	return handle_entry(vi, cls, cmd);
}

SEC("kprobe/virtnet_send_command_reply")
int BPF_KPROBE(virtcmdlatency_entry_reply_kprobe, struct virtnet_info___x *vi, u8 cls, u8 cmd)
{
	return handle_entry(vi, cls, cmd);
}

SEC("kprobe/virtnet_send_command")
int BPF_KPROBE(virtcmdlatency_entry_kprobe, struct virtnet_info___x *vi, u8 cls, u8 cmd)
{
	return handle_entry(vi, cls, cmd);
}

/* hook "exit" */

SEC("fexit/virtnet_send_command_reply")
int BPF_PROG(virtcmdlatency_exit_reply_fexit)
{
	return handle_exit();
}

SEC("fexit/virtnet_send_command")
int BPF_PROG(virtcmdlatency_exit_fexit)
{
	return handle_exit();
}

SEC("kretprobe/virtnet_send_command_reply")
int BPF_KRETPROBE(virtcmdlatency_exit_reply_kretprobe)
{
	return handle_exit();
}

SEC("kretprobe/virtnet_send_command")
int BPF_KRETPROBE(virtcmdlatency_exit_kretprobe)
{
	return handle_exit();
}

char LICENSE[] SEC("license") = "GPL";
