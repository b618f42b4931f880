# SPDX-License-Identifier: Apache-2.0
"""Pod attribution from /proc/<pid>/cgroup: real-world path shapes and tests/fixtures/cgroup.

Each example names where its shape (and, mostly, the very string) was seen. Sources:

- kubelet: kubernetes ``pkg/kubelet/cm/cgroup_manager_linux.go`` (``ToSystemd``, ``-`` -> ``_``),
  ``pod_container_manager_linux.go`` (``"pod" + uid``), ``qos_container_manager_linux.go``.
- coroot: coroot/coroot-node-agent ``cgroup/cgroup_test.go`` and ``cgroup/fixtures/proc/*/cgroup``.
- datadog: DataDog/datadog-agent ``pkg/util/cgroups/pid_mapper_test.go``.
- kepler: sustainable-computing-io/kepler ``pkg/cgroup`` tests
  (``TestExtractPodContainerIDfromPathWithCgroup``).
- pixie: pixie-io/pixie ``src/shared/metadata/cgroup_path_resolver_test.cc``.
- issues: kubernetes/minikube#11280 and kontena/pharos-cluster#440 (``systemd-cgls`` output),
  netdata/netdata#4868 (containerd systemd tree with static pods), containerd/nri#227 (kind on
  cgroup v2), rancher/k3k#792 (k3s ``/proc/<pid>/cgroup``), Inspektor Gadget docs (static etcd pod).
- kernel: ``proc_cgroup_show`` (`` (deleted)`` suffix), cgroup_namespaces(7) (``/..`` prefixes).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from otel_kubeskoop.procfs import ParseError, ProcDir
from otel_kubeskoop.topology.cgroup import (
    QOS_BESTEFFORT,
    QOS_BURSTABLE,
    QOS_GUARANTEED,
    RUNTIME_CONTAINERD,
    RUNTIME_CRIO,
    RUNTIME_DOCKER,
    CgroupPod,
    parse_cgroup_path,
    parse_proc_cgroup,
    read_pod_of,
)

PROC = Path(__file__).resolve().parents[2] / "fixtures" / "cgroup" / "proc"

BE, BU, GU = QOS_BESTEFFORT, QOS_BURSTABLE, QOS_GUARANTEED
CTRD, CRIO, DOCKER = RUNTIME_CONTAINERD, RUNTIME_CRIO, RUNTIME_DOCKER


def _pod(uid: str, cid: str | None, runtime: str | None, qos: str | None) -> CgroupPod:
    return CgroupPod(pod_uid=uid, container_id=cid, runtime=runtime, qos=qos)


# (cgroup path, expected). One case per shape; the comment names the source of the example.
POD_PATHS = [
    # --- cgroupfs driver -------------------------------------------------------------------------
    pytest.param(
        # kepler; datadog (v1 blkio line): containerd or docker with cgroupfs, bare 64-hex id.
        "/kubepods/burstable/podf6adb0af-0855-4bab-b25b-c853f18d0ce2/"
        "35b97177dada20362ab90d90ac63cd54e8a41cf87bea34f270631b6da17f4a93",
        _pod(
            "f6adb0af-0855-4bab-b25b-c853f18d0ce2",
            "35b97177dada20362ab90d90ac63cd54e8a41cf87bea34f270631b6da17f4a93",
            None,
            BU,
        ),
        id="cgroupfs-burstable",
    ),
    pytest.param(
        # coroot: a container that made its own sub-cgroup (kube-proxy) below its cgroup.
        "/kubepods/besteffort/pod0d08203e-255a-11e9-8cd9-0007cb0b2cc8/"
        "671a50f5d60566556912f61511d0ec9e4d5c78d53fbc4676727180438bbbbc55/kube-proxy",
        _pod(
            "0d08203e-255a-11e9-8cd9-0007cb0b2cc8",
            "671a50f5d60566556912f61511d0ec9e4d5c78d53fbc4676727180438bbbbc55",
            None,
            BE,
        ),
        id="cgroupfs-besteffort-subcgroup",
    ),
    pytest.param(
        # coroot; pixie GKEFormat: Guaranteed pods sit right under kubepods.
        "/kubepods/poda38c12e8-255a-11e9-8cd9-0007cb0b2cc8/"
        "32c562ed81a2622b37b80cb216859820ba51bd694f60ee4cf10d07a4011266f8",
        _pod(
            "a38c12e8-255a-11e9-8cd9-0007cb0b2cc8",
            "32c562ed81a2622b37b80cb216859820ba51bd694f60ee4cf10d07a4011266f8",
            None,
            GU,
        ),
        id="cgroupfs-guaranteed",
    ),
    pytest.param(
        # coroot: CRI-O with the cgroupfs driver names the container crio-<id> (no .scope).
        "/kubepods/poda48c12e8-255a-11e9-8cd9-0007cb0b2cc8/"
        "crio-63425c4a8b4291744a79dd9011fddc7a1f8ffda61f65d72196aa01d00cae2e2e",
        _pod(
            "a48c12e8-255a-11e9-8cd9-0007cb0b2cc8",
            "63425c4a8b4291744a79dd9011fddc7a1f8ffda61f65d72196aa01d00cae2e2e",
            CRIO,
            GU,
        ),
        id="cgroupfs-crio",
    ),
    pytest.param(
        # coroot: static pod, UID is the 32-hex config hash (no dashes to restore).
        "/kubepods/burstable/pod9729a196c4723b60ab401eaff722982d/"
        "d166c6190614efc91956b78e96d74c3fbc96ca8e91948c36de3bc5b0e7b27d48",
        _pod(
            "9729a196c4723b60ab401eaff722982d",
            "d166c6190614efc91956b78e96d74c3fbc96ca8e91948c36de3bc5b0e7b27d48",
            None,
            BU,
        ),
        id="cgroupfs-static-pod",
    ),
    pytest.param(
        # kepler "valid path with cgroup kubelet": kind on cgroup v1, --cgroup-root=/kubelet
        # (written without a leading slash there).
        "kubelet/kubepods/besteffort/podbdd4097d-6795-404e-9bd8-6a1383386198/"
        "c79788e0da15a6597263eb2b9c51d05dd1a9a1d08c53c1161dc8c45d2dac6b38",
        _pod(
            "bdd4097d-6795-404e-9bd8-6a1383386198",
            "c79788e0da15a6597263eb2b9c51d05dd1a9a1d08c53c1161dc8c45d2dac6b38",
            None,
            BE,
        ),
        id="cgroupfs-kubelet-root",
    ),
    pytest.param(
        # datadog "docker in docker": kind node container, then the kubelet's root. The node
        # container's 64-hex id must not be taken for the container.
        "/docker/88ea268ece65a02d68b169fd74bcbcb427eb7f28900db0e3b906fb2eeb7341df/kubelet/kubepods/"
        "burstable/poda5ea884f-9e60-4912-bd62-fef9a31db47a/"
        "a51a9f7d073f848e7fc59e56e8f11524f330a2175a4ed26327da2dfe0d28015e",
        _pod(
            "a5ea884f-9e60-4912-bd62-fef9a31db47a",
            "a51a9f7d073f848e7fc59e56e8f11524f330a2175a4ed26327da2dfe0d28015e",
            None,
            BU,
        ),
        id="cgroupfs-docker-in-docker",
    ),
    pytest.param(
        # rancher/k3k#792: k3s (embedded containerd, cgroupfs driver) on cgroup v2.
        "/kubepods/burstable/pod404bd273-57bc-4508-a386-e2b76d3c9cfe/"
        "3aaaa76f09e1de6bb75e84f9c15b737a2d590f69757953e3ec262bd5861dc15b",
        _pod(
            "404bd273-57bc-4508-a386-e2b76d3c9cfe",
            "3aaaa76f09e1de6bb75e84f9c15b737a2d590f69757953e3ec262bd5861dc15b",
            None,
            BU,
        ),
        id="cgroupfs-k3s",
    ),
    pytest.param(
        # coroot-style "/unified/..." prefix (hybrid host, v2 hierarchy mounted at .../unified).
        "/unified/kubepods/burstable/podaacce108-eb34-4a36-ad41-a9f9d36b3a8f/"
        "df4f60dd7f7c9fdc110082804729e637c21c2bca7856b9a6d4bf36cfaef6a2d3",
        _pod(
            "aacce108-eb34-4a36-ad41-a9f9d36b3a8f",
            "df4f60dd7f7c9fdc110082804729e637c21c2bca7856b9a6d4bf36cfaef6a2d3",
            None,
            BU,
        ),
        id="cgroupfs-unified-prefix",
    ),
    pytest.param(
        # cgroup_namespaces(7): read from a container whose cgroupns root is another pod's
        # container cgroup, /kubepods/burstable/podA/ctrA -> /kubepods/besteffort/podX/ctrY.
        "/../../../besteffort/pod0d08203e-255a-11e9-8cd9-0007cb0b2cc8/"
        "671a50f5d60566556912f61511d0ec9e4d5c78d53fbc4676727180438bbbbc55",
        _pod(
            "0d08203e-255a-11e9-8cd9-0007cb0b2cc8",
            "671a50f5d60566556912f61511d0ec9e4d5c78d53fbc4676727180438bbbbc55",
            None,
            BE,
        ),
        id="cgroupfs-cgroupns-relative",
    ),
    pytest.param(
        # Same, target in the reader's own QoS level: the ".." hides the class.
        "/../../poda38c12e8-255a-11e9-8cd9-0007cb0b2cc8/"
        "32c562ed81a2622b37b80cb216859820ba51bd694f60ee4cf10d07a4011266f8",
        _pod(
            "a38c12e8-255a-11e9-8cd9-0007cb0b2cc8",
            "32c562ed81a2622b37b80cb216859820ba51bd694f60ee4cf10d07a4011266f8",
            None,
            None,
        ),
        id="cgroupfs-cgroupns-relative-no-qos",
    ),
    # --- systemd driver --------------------------------------------------------------------------
    pytest.param(
        # netdata#4868 (containerd, systemd driver, cgroup v2).
        "/kubepods.slice/kubepods-burstable.slice/"
        "kubepods-burstable-pod55c6c714_b240_4dec_9a45_57b61696ab6e.slice/"
        "cri-containerd-2032491dcae31e6746f47daa0ac74564f2843a1bd847c5e6c4eb501ca132ac36.scope",
        _pod(
            "55c6c714-b240-4dec-9a45-57b61696ab6e",
            "2032491dcae31e6746f47daa0ac74564f2843a1bd847c5e6c4eb501ca132ac36",
            CTRD,
            BU,
        ),
        id="systemd-containerd",
    ),
    pytest.param(
        # netdata#4868: static pod (32-hex UID) under the systemd driver.
        "/kubepods.slice/kubepods-burstable.slice/"
        "kubepods-burstable-pod8daa50c3a64c9ff60bb9eab7b44b56fd.slice/"
        "cri-containerd-2884d57c0e100d7a9a2f9487ce0bc2986bca3430e988af7a4865aff061f51ac5.scope",
        _pod(
            "8daa50c3a64c9ff60bb9eab7b44b56fd",
            "2884d57c0e100d7a9a2f9487ce0bc2986bca3430e988af7a4865aff061f51ac5",
            CTRD,
            BU,
        ),
        id="systemd-static-pod",
    ),
    pytest.param(
        # coroot: cri-containerd-<id> without the .scope suffix.
        "/kubepods.slice/kubepods-burstable.slice/"
        "kubepods-burstable-pod3e61c214bc3ed9ff81e21474dd6cba17.slice/"
        "cri-containerd-c74b0f5062f0bc726cae1e9369ad4a95deed6b298d247f0407475adb23fa3190",
        _pod(
            "3e61c214bc3ed9ff81e21474dd6cba17",
            "c74b0f5062f0bc726cae1e9369ad4a95deed6b298d247f0407475adb23fa3190",
            CTRD,
            BU,
        ),
        id="systemd-containerd-no-scope-suffix",
    ),
    pytest.param(
        # kepler "valid path with cgroup 2"; pixie OpenShiftFormat: CRI-O, systemd driver.
        "/kubepods.slice/kubepods-burstable.slice/"
        "kubepods-burstable-pod2c9f8a79_5391_454b_88cb_86190881cb96.slice/"
        "crio-a09343ca97901516c25036e2b954421254f8c68b384b536064e8999f0c4ed18d.scope",
        _pod(
            "2c9f8a79-5391-454b-88cb-86190881cb96",
            "a09343ca97901516c25036e2b954421254f8c68b384b536064e8999f0c4ed18d",
            CRIO,
            BU,
        ),
        id="systemd-crio",
    ),
    pytest.param(
        # coroot: crun's "container" sub-cgroup below the CRI-O scope.
        "/kubepods.slice/kubepods-burstable.slice/"
        "kubepods-burstable-podea19ff5d_943a_4466_a07e_a71e9e50cc62.slice/"
        "crio-21572039dd8398ff8272b031fa5422a40165145ab37f2f8794e1e7f844fe8118.scope/container",
        _pod(
            "ea19ff5d-943a-4466-a07e-a71e9e50cc62",
            "21572039dd8398ff8272b031fa5422a40165145ab37f2f8794e1e7f844fe8118",
            CRIO,
            BU,
        ),
        id="systemd-crio-crun-container-subcgroup",
    ),
    pytest.param(
        # CRI-O conmon_cgroup="pod": the monitor is in the pod's slice but is not the container
        # (shape as in coroot's "crio conmon ignored"; pod slice from minikube#11280).
        "/kubepods.slice/kubepods-besteffort.slice/"
        "kubepods-besteffort-pod2ca4a155_3599_498d_bb9d_4446693fa3ea.slice/"
        "crio-conmon-358607a37e7ada357032e7f5729c9ae6a3efdb7962acbcbe47ff6a3c5506cb1c.scope",
        _pod("2ca4a155-3599-498d-bb9d-4446693fa3ea", None, CRIO, BE),
        id="systemd-crio-conmon",
    ),
    pytest.param(
        # pharos-cluster#440 (systemd-cgls): Docker with the systemd driver.
        "/kubepods.slice/kubepods-besteffort.slice/"
        "kubepods-besteffort-pod9692aa0e_748e_11e8_8dfa_76d458035df6.slice/"
        "docker-abddff03dfd7710c79a750ce3e730365cbb2c8247a974170c1062683bc3e9152.scope",
        _pod(
            "9692aa0e-748e-11e8-8dfa-76d458035df6",
            "abddff03dfd7710c79a750ce3e730365cbb2c8247a974170c1062683bc3e9152",
            DOCKER,
            BE,
        ),
        id="systemd-docker",
    ),
    pytest.param(
        # pixie StandardFormatDocker: Guaranteed pod slice right under kubepods.slice.
        "/kubepods.slice/kubepods-pod8dbc5577_d0e2_4706_8787_57d52c03ddf2.slice/"
        "docker-14011c7d92a9e513dfd69211da0413dbf319a5e45a02b354ba6e98e10272542d.scope",
        _pod(
            "8dbc5577-d0e2-4706-8787-57d52c03ddf2",
            "14011c7d92a9e513dfd69211da0413dbf319a5e45a02b354ba6e98e10272542d",
            DOCKER,
            GU,
        ),
        id="systemd-guaranteed",
    ),
    pytest.param(
        # containerd/nri#227: kind on cgroup v2, cgroup root /kubelet folded into every slice name.
        "/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/"
        "kubelet-kubepods-besteffort-pod1e597579_417e_482f_bf65_5fe170c3aebd.slice/"
        "cri-containerd-a09bc17f5aa29b0dbdec9ede5f46cf1396d2405917ab02e6f1eb1019f388396e.scope",
        _pod(
            "1e597579-417e-482f-bf65-5fe170c3aebd",
            "a09bc17f5aa29b0dbdec9ede5f46cf1396d2405917ab02e6f1eb1019f388396e",
            CTRD,
            BE,
        ),
        id="systemd-kind-kubelet-slice",
    ),
    pytest.param(
        # minikube#11280: minikube (docker driver) with CRI-O, node container's cgroup first.
        "/docker/d6701ec289c56e4391acb11d07474b3139466857a305490575508a8b7a9fcf22/kubepods.slice/"
        "kubepods-besteffort.slice/"
        "kubepods-besteffort-pod2ca4a155_3599_498d_bb9d_4446693fa3ea.slice/"
        "crio-0ba8ac17e4e7a31fb82279503552fe94e64bab4745bf6fd2ff231e7c8ca8bed0.scope",
        _pod(
            "2ca4a155-3599-498d-bb9d-4446693fa3ea",
            "0ba8ac17e4e7a31fb82279503552fe94e64bab4745bf6fd2ff231e7c8ca8bed0",
            CRIO,
            BE,
        ),
        id="systemd-minikube-nested",
    ),
    pytest.param(
        # datadog cgroupV2ProcCgroupNoHost: read from inside a cgroup namespace (kernel prints the
        # leading "/"; datadog's sample lacks it, both are accepted).
        "../../../kubepods-burstable.slice/"
        "kubepods-burstable-pod562c01d6_6aba_49fe_ae52_61c40c04eca4.slice/"
        "docker-a51a9f7d073f848e7fc59e56e8f11524f330a2175a4ed26327da2dfe0d28015f.scope",
        _pod(
            "562c01d6-6aba-49fe-ae52-61c40c04eca4",
            "a51a9f7d073f848e7fc59e56e8f11524f330a2175a4ed26327da2dfe0d28015f",
            DOCKER,
            BU,
        ),
        id="systemd-cgroupns-relative",
    ),
    # --- containerd colon form (runc's slice:prefix:name taken literally) ------------------------
    pytest.param(
        # coroot; kepler; pixie BareMetalK8s_1_21.
        "/system.slice/containerd.service/"
        "kubepods-burstable-pod4ed02c0b_0df8_4d14_a30e_fd589ee4143a.slice:cri-containerd:"
        "d4a9f9195eaf7e4a729f24151101e1de61f1398677e7b82acfb936dff0b4ce55",
        _pod(
            "4ed02c0b-0df8-4d14-a30e-fd589ee4143a",
            "d4a9f9195eaf7e4a729f24151101e1de61f1398677e7b82acfb936dff0b4ce55",
            CTRD,
            BU,
        ),
        id="colon-containerd-service",
    ),
    pytest.param(
        # pixie BareMetalK8s_1_21 (besteffort).
        "/system.slice/containerd.service/"
        "kubepods-besteffort-pod1544eb37_e4f7_49eb_8cc4_3d01c41be77b.slice:cri-containerd:"
        "8618d3540ce713dd59ed0549719643a71dd482c40c21685773e7ac1291b004f5",
        _pod(
            "1544eb37-e4f7-49eb-8cc4-3d01c41be77b",
            "8618d3540ce713dd59ed0549719643a71dd482c40c21685773e7ac1291b004f5",
            CTRD,
            BE,
        ),
        id="colon-besteffort",
    ),
    pytest.param(
        # datadog cgroupV1ProcCgroupWithColons: some v1 controllers show it at the root.
        "/kubepods-burstable-pod5be537b8_3a4e_4607_af71_31598b3a4fd3.slice:cri-containerd:"
        "1c8f503430973935b7d8a80c4f58c0946b052a021e6855b358e5ec38601af120",
        _pod(
            "5be537b8-3a4e-4607-af71-31598b3a4fd3",
            "1c8f503430973935b7d8a80c4f58c0946b052a021e6855b358e5ec38601af120",
            CTRD,
            BU,
        ),
        id="colon-at-root",
    ),
    pytest.param(
        # Inspektor Gadget docs (local-gadget list-containers, etcd static pod, "cgroupV1"):
        # colon form with a static 32-hex UID.
        "/system.slice/containerd.service/kubepods-burstable-pod87a960e902bbb19289771a77e4b07353"
        ".slice:cri-containerd:fef9c7f66e0d68c554b7ea48cc3ef4e77c553957807de7f05ad0210a05d8c215",
        _pod(
            "87a960e902bbb19289771a77e4b07353",
            "fef9c7f66e0d68c554b7ea48cc3ef4e77c553957807de7f05ad0210a05d8c215",
            CTRD,
            BU,
        ),
        id="colon-static-pod",
    ),
    # --- pod level only --------------------------------------------------------------------------
    pytest.param(
        # coroot "kubepods sandbox pod level": a process directly in the pod cgroup.
        "/kubepods/burstable/pod6a4ce4a0-ba47-11ea-b2a7-0cc47ac5979e",
        _pod("6a4ce4a0-ba47-11ea-b2a7-0cc47ac5979e", None, None, BU),
        id="pod-level-cgroupfs",
    ),
    pytest.param(
        # cadvisor's pod-level id in kubelet /metrics/cadvisor (kind), same slice as above.
        "/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-burstable.slice/"
        "kubelet-kubepods-burstable-podb15d8c96_12da_479d_8b9f_b569fbda4d2d.slice",
        _pod("b15d8c96-12da-479d-8b9f-b569fbda4d2d", None, None, BU),
        id="pod-level-systemd",
    ),
    pytest.param(
        # A runtime helper cgroup under the pod (Kata's VMM cgroup "kata_<sandbox id>"): in the
        # pod, not a container we can name.
        "/kubepods/besteffort/pod0d08203e-255a-11e9-8cd9-0007cb0b2cc8/"
        "kata_671a50f5d60566556912f61511d0ec9e4d5c78d53fbc4676727180438bbbbc55",
        _pod("0d08203e-255a-11e9-8cd9-0007cb0b2cc8", None, None, BE),
        id="pod-level-unknown-child",
    ),
    pytest.param(
        # proc_cgroup_show: v2 zombie whose cgroup was removed (minikube#11280 path).
        "/kubepods.slice/kubepods-besteffort.slice/"
        "kubepods-besteffort-pod2ca4a155_3599_498d_bb9d_4446693fa3ea.slice/"
        "crio-358607a37e7ada357032e7f5729c9ae6a3efdb7962acbcbe47ff6a3c5506cb1c.scope (deleted)",
        _pod(
            "2ca4a155-3599-498d-bb9d-4446693fa3ea",
            "358607a37e7ada357032e7f5729c9ae6a3efdb7962acbcbe47ff6a3c5506cb1c",
            CRIO,
            BE,
        ),
        id="deleted-suffix",
    ),
    pytest.param(
        # A cluster inside a pod (kind in a CI pod): the innermost pod, the one whose kubelet made
        # the cgroup, is returned.
        "/kubepods/burstable/pod15513b48-e7a5-48fc-b9e3-92f713f36504/"
        "a51a9f7d073f848e7fc59e56e8f11524f330a2175a4ed26327da2dfe0d28015f/kubelet/kubepods/"
        "besteffort/podbdd4097d-6795-404e-9bd8-6a1383386198/"
        "c79788e0da15a6597263eb2b9c51d05dd1a9a1d08c53c1161dc8c45d2dac6b38",
        _pod(
            "bdd4097d-6795-404e-9bd8-6a1383386198",
            "c79788e0da15a6597263eb2b9c51d05dd1a9a1d08c53c1161dc8c45d2dac6b38",
            None,
            BE,
        ),
        id="nested-pod-innermost",
    ),
]


@pytest.mark.parametrize(("path", "expected"), POD_PATHS)
def test_pod_paths(path: str, expected: CgroupPod) -> None:
    assert parse_cgroup_path(path) == expected


NON_POD_PATHS = [
    "/",  # host root (v1 controllers without a cgroup, init on some hosts)
    "",  # v1 zombie on a patched kernel prints only " (deleted)"
    " (deleted)",
    "/init.scope",  # systemd.special(7)
    "/system.slice/sshd.service",
    "/system.slice/containerd.service",  # datadog: unified line of a hybrid v1 pod process
    "/system.slice/kubelet.service",
    "/user.slice/user-1000.slice/session-1.scope",  # coroot
    "/user.slice/user-1000.slice/user@1000.service/app.slice/podman.service",
    "/k3s",  # k3s pkg/cgroups/cgroups_linux.go: the k3s process's own cgroup
    "/kubepods.slice",  # coroot "kubepods root"
    "/kubepods.slice/kubepods-besteffort.slice",  # QoS level, no pod
    "/kubepods/burstable",
    # Plain Docker and Podman containers, not pods (coroot; kepler).
    "/docker/63425c4a8b4291744a79dd9011fddc7a1f8ffda61f65d72196aa01d00cae2e2d",
    "/system.slice/docker-cf87ba651579c9231db817909e7865e5747bd7abcac0c57ce23cf4abbaee046b.scope",
    "/machine.slice/libpod-06dc5f321aad8726aa26559f16ec203bc099245bc44894b14a89fc02b022d1d5.scope"
    "/container",
    # A kind node container's own processes (containerd inside it), not a pod.
    "/system.slice/docker-89ac90181a86fdea23d87ab993ceb698aa61528123c23135ef43fe5246a1b11e.scope"
    "/system.slice/containerd.service",
    # Datadog "dind" unified line: the kind node's containerd.
    "/docker/88ea268ece65a02d68b169fd74bcbcb427eb7f28900db0e3b906fb2eeb7341df/system.slice/"
    "containerd.service",
    # Look-alikes: a pod segment outside kubepods/QoS, a malformed UID.
    "/foo/pod0d08203e-255a-11e9-8cd9-0007cb0b2cc8/"
    "671a50f5d60566556912f61511d0ec9e4d5c78d53fbc4676727180438bbbbc55",
    "/kubepods.slice/kubepods-burstable-podNOTAUUID.slice/cri-containerd-abc.scope",
    "/kubepods/burstable/pod123",
]


@pytest.mark.parametrize("path", NON_POD_PATHS)
def test_non_pod_paths(path: str) -> None:
    assert parse_cgroup_path(path) is None


def test_short_or_unknown_container_segment_keeps_the_pod() -> None:
    # A container segment that is not a 64-hex id is not taken for one.
    got = parse_cgroup_path(
        "/kubepods.slice/kubepods-pod8dbc5577_d0e2_4706_8787_57d52c03ddf2.slice/"
        "cri-containerd-abc123.scope"
    )
    assert got == _pod("8dbc5577-d0e2-4706-8787-57d52c03ddf2", None, None, GU)
    colon = parse_cgroup_path(
        "/system.slice/containerd.service/kubepods-pod8dbc5577_d0e2_4706_8787_57d52c03ddf2.slice"
        ":somerunner:14011c7d92a9e513dfd69211da0413dbf319a5e45a02b354ba6e98e10272542d"
    )
    assert colon == _pod(
        "8dbc5577-d0e2-4706-8787-57d52c03ddf2",
        "14011c7d92a9e513dfd69211da0413dbf319a5e45a02b354ba6e98e10272542d",
        None,
        GU,
    )


def test_cgroup_pod_is_frozen_with_slots() -> None:
    pod = _pod("u", None, None, None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        pod.pod_uid = "v"  # type: ignore[misc]
    assert not hasattr(pod, "__dict__")
    assert [f.name for f in dataclasses.fields(CgroupPod)] == [
        "pod_uid",
        "container_id",
        "runtime",
        "qos",
    ]


# --- whole files ---------------------------------------------------------------------------------


def _file(pid: int) -> bytes:
    return (PROC / str(pid) / "cgroup").read_bytes()


WHOLE_FILES = [
    pytest.param(
        # cgroup v1 only, 12 hierarchies (Ubuntu 18.04 / CentOS layout), systemd driver + Docker;
        # pod and container from pharos-cluster#440. rdma is at "/".
        100,
        _pod(
            "9692aa0e-748e-11e8-8dfa-76d458035df6",
            "abddff03dfd7710c79a750ce3e730365cbb2c8247a974170c1062683bc3e9152",
            DOCKER,
            BE,
        ),
        id="v1-systemd-docker",
    ),
    pytest.param(
        # datadog cgroupV1ProcCgroup: hybrid; runc's v1 manager left the unified path at
        # containerd.service, so the v1 lines name the pod.
        101,
        _pod(
            "15513b48-e7a5-48fc-b9e3-92f713f36504",
            "a51a9f7d073f848e7fc59e56e8f11524f330a2175a4ed26327da2dfe0d28015f",
            None,
            BU,
        ),
        id="hybrid-v1-cgroupfs-unified-at-containerd",
    ),
    pytest.param(
        # datadog cgroupV1ProcCgroupWithColons: colon form, two path shapes across controllers.
        102,
        _pod(
            "5be537b8-3a4e-4607-af71-31598b3a4fd3",
            "1c8f503430973935b7d8a80c4f58c0946b052a021e6855b358e5ec38601af120",
            CTRD,
            BU,
        ),
        id="hybrid-colon-form",
    ),
    pytest.param(
        # datadog dindProcCgroup: kind on cgroup v1, node container cgroup first.
        103,
        _pod(
            "a5ea884f-9e60-4912-bd62-fef9a31db47a",
            "a51a9f7d073f848e7fc59e56e8f11524f330a2175a4ed26327da2dfe0d28015e",
            None,
            BU,
        ),
        id="v1-docker-in-docker",
    ),
    pytest.param(
        # netdata#4868: cgroup v2, systemd driver, containerd.
        200,
        _pod(
            "55c6c714-b240-4dec-9a45-57b61696ab6e",
            "2032491dcae31e6746f47daa0ac74564f2843a1bd847c5e6c4eb501ca132ac36",
            CTRD,
            BU,
        ),
        id="v2-systemd-containerd",
    ),
    pytest.param(
        # datadog cgroupV2ProcCgroupNoHost with the kernel's leading "/": reader in a cgroupns.
        201,
        _pod(
            "562c01d6-6aba-49fe-ae52-61c40c04eca4",
            "a51a9f7d073f848e7fc59e56e8f11524f330a2175a4ed26327da2dfe0d28015f",
            DOCKER,
            BU,
        ),
        id="v2-cgroupns-relative",
    ),
    pytest.param(
        # rancher/k3k#792: k3s, cgroup v2, cgroupfs driver.
        202,
        _pod(
            "404bd273-57bc-4508-a386-e2b76d3c9cfe",
            "3aaaa76f09e1de6bb75e84f9c15b737a2d590f69757953e3ec262bd5861dc15b",
            None,
            BU,
        ),
        id="v2-k3s",
    ),
    pytest.param(
        # proc_cgroup_show " (deleted)": a zombie whose container cgroup is gone.
        203,
        _pod(
            "2ca4a155-3599-498d-bb9d-4446693fa3ea",
            "358607a37e7ada357032e7f5729c9ae6a3efdb7962acbcbe47ff6a3c5506cb1c",
            CRIO,
            BE,
        ),
        id="v2-deleted",
    ),
    pytest.param(
        # A host service on a hybrid host laid out like this machine's /proc/self/cgroup
        # (nine v1 hierarchies plus "0::").
        300,
        None,
        id="hybrid-host-service",
    ),
    pytest.param(
        # minikube#11280 on a hybrid host: the systemd driver mirrors the scope in every
        # hierarchy, including the unified one.
        301,
        _pod(
            "2ca4a155-3599-498d-bb9d-4446693fa3ea",
            "0ba8ac17e4e7a31fb82279503552fe94e64bab4745bf6fd2ff231e7c8ca8bed0",
            CRIO,
            BE,
        ),
        id="hybrid-unified-names-pod",
    ),
]


@pytest.mark.parametrize(("pid", "expected"), WHOLE_FILES)
def test_whole_files(pid: int, expected: CgroupPod | None) -> None:
    assert parse_proc_cgroup(_file(pid), f"{pid}/cgroup") == expected


def test_v1_file_has_twelve_hierarchies() -> None:
    lines = _file(100).splitlines()
    assert len(lines) == 12
    assert sorted(int(line.split(b":", 1)[0]) for line in lines) == list(range(1, 13))


POD_A = "/kubepods/burstable/pod15513b48-e7a5-48fc-b9e3-92f713f36504"
CTR_A = "a51a9f7d073f848e7fc59e56e8f11524f330a2175a4ed26327da2dfe0d28015f"
POD_B = "/kubepods/besteffort/pod0d08203e-255a-11e9-8cd9-0007cb0b2cc8"
CTR_B = "671a50f5d60566556912f61511d0ec9e4d5c78d53fbc4676727180438bbbbc55"


def test_unified_line_wins_over_v1() -> None:
    data = f"4:memory:{POD_B}/{CTR_B}\n0::{POD_A}/{CTR_A}\n".encode()
    got = parse_proc_cgroup(data)
    assert got is not None
    assert (got.pod_uid, got.container_id) == ("15513b48-e7a5-48fc-b9e3-92f713f36504", CTR_A)


def test_v1_adds_the_container_of_the_same_pod() -> None:
    data = f"4:memory:{POD_A}/{CTR_A}\n0::{POD_A}\n".encode()
    got = parse_proc_cgroup(data)
    assert got is not None and got.container_id == CTR_A


def test_v1_does_not_override_a_different_unified_pod() -> None:
    data = f"4:memory:{POD_B}/{CTR_B}\n0::{POD_A}\n".encode()
    got = parse_proc_cgroup(data)
    assert got == _pod("15513b48-e7a5-48fc-b9e3-92f713f36504", None, None, BU)


def test_v1_preference_container_then_controller_then_order() -> None:
    # devices has only the pod; memory has the container: the container wins.
    data = f"3:devices:{POD_A}\n2:memory:{POD_A}/{CTR_A}\n1:name=systemd:/\n".encode()
    got = parse_proc_cgroup(data)
    assert got is not None and got.container_id == CTR_A
    # Both have containers: memory is preferred over an earlier freezer line.
    data = f"3:freezer:{POD_B}/{CTR_B}\n2:memory:{POD_A}/{CTR_A}\n".encode()
    got = parse_proc_cgroup(data)
    assert got is not None and got.container_id == CTR_A
    # Co-mounted controllers count by their best member.
    data = f"3:freezer:{POD_B}/{CTR_B}\n2:cpu,cpuacct:{POD_A}/{CTR_A}\n".encode()
    got = parse_proc_cgroup(data)
    assert got is not None and got.container_id == CTR_A
    # Neither is preferred: file order.
    data = f"3:freezer:{POD_B}/{CTR_B}\n2:devices:{POD_A}/{CTR_A}\n".encode()
    got = parse_proc_cgroup(data)
    assert got is not None and got.container_id == CTR_B


def test_pure_v2_and_blank_trailing_line() -> None:
    assert parse_proc_cgroup(b"0::/\n\n") is None
    got = parse_proc_cgroup(f"0::{POD_A}/{CTR_A}".encode())  # no final newline
    assert got is not None and got.container_id == CTR_A


# --- malformed -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pid", "line", "needle"),
    [
        pytest.param(900, 3, "got 2 field(s)", id="two-fields"),
        pytest.param(901, None, "empty", id="empty"),
        pytest.param(902, 2, "not a number", id="bad-hierarchy-id"),
    ],
)
def test_malformed_files(pid: int, line: int | None, needle: str) -> None:
    source = ProcDir(str(PROC / str(pid)))
    with pytest.raises(ParseError) as info:
        read_pod_of(source)
    err = info.value
    assert err.path == source.path("cgroup")
    assert err.line == line
    assert needle in err.message
    assert err.path in str(err)


def test_malformed_line_after_a_match_still_raises() -> None:
    with pytest.raises(ParseError) as info:
        parse_proc_cgroup(f"0::{POD_A}/{CTR_A}\ngarbage\n".encode(), "/proc/42/cgroup")
    assert (info.value.path, info.value.line) == ("/proc/42/cgroup", 2)


def test_whitespace_only_file_is_empty() -> None:
    with pytest.raises(ParseError, match="empty"):
        parse_proc_cgroup(b"\n \n")


# --- reading -------------------------------------------------------------------------------------


def test_read_pod_of_proc_dir() -> None:
    got = read_pod_of(ProcDir(str(PROC / "200")))
    assert got == _pod(
        "55c6c714-b240-4dec-9a45-57b61696ab6e",
        "2032491dcae31e6746f47daa0ac74564f2843a1bd847c5e6c4eb501ca132ac36",
        CTRD,
        BU,
    )
    assert read_pod_of(ProcDir(str(PROC / "300"))) is None


def test_read_pod_of_missing_file_passes_through() -> None:
    with pytest.raises(FileNotFoundError):
        read_pod_of(ProcDir(str(PROC / "999999")))


def test_read_pod_of_own_process() -> None:
    # Whatever this machine is, its own cgroup file parses (to None outside a pod).
    got = read_pod_of(ProcDir("/proc/self"))
    assert got is None or isinstance(got, CgroupPod)
