"""The 1.x client against a real neuron-rtd: session handshake, NEURONCORE_GROUP_SIZES round-robin, bytes and
shared-memory tensors, NEURON_MAX_NUM_INFERS, a client killed mid-session, and stubs generated at test time from
our .proto and (when NRT_LAB_AWS_PROTO_DIR points at them) from the public definitions (docs/legacy_daemon.md)."""

from __future__ import annotations

import glob
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from legacy_helpers import add_neff, child_env, serving_root, short_root, start_daemon

from nrt_lab.legacy.client import (
    CHUNK_BYTES,
    Client,
    DaemonUnreachable,
    LegacyError,
    daemon_ncg_count,
    parse_group_sizes,
)

REPO = Path(__file__).resolve().parents[1]
ONES = np.ones((4, 3), np.float32)


@pytest.fixture(scope="module")
def root() -> Iterator[Path]:
    """A daemon on all devices of an inf1.6xlarge (16 NeuronCores)."""
    yield from serving_root()


@pytest.mark.parametrize(("value", "sizes"), [
    ("2,2", [2, 2]), ("[1,2,1]", [1, 2, 1]), (" [ 4 ] ", [4]), ("2x1", [1, 1]), ("1,2x2", [1, 2, 2]), ("", []),
])
def test_group_sizes_parse(value: str, sizes: list[int]) -> None:
    assert parse_group_sizes(value) == sizes


@pytest.mark.parametrize("value", ["a", "1,,2", "0", "2x0", "-1", "[1,2"])
def test_ill_formed_group_sizes_warn_and_use_the_default(value: str) -> None:
    with pytest.warns(UserWarning, match="NEURONCORE_GROUP_SIZES=.* is ill-formed.*using the default"):
        assert parse_group_sizes(value) == []


def test_neff_streams_in_one_mib_chunks() -> None:
    client = Client.__new__(Client)
    client.session_id, client.infer_timeout_s, client.max_infers = 7, 10, 3
    requests = list(client._load_requests(b"x" * (2 * CHUNK_BYTES + 5), None, 4))
    kinds = [r.WhichOneof("content") for r in requests]
    assert kinds == ["session_id", "h_eg", "model_params", "neff_size", "neff_chunk", "neff_chunk", "neff_chunk"]
    assert [len(r.neff_chunk.chunk) for r in requests[4:]] == [CHUNK_BYTES, CHUNK_BYTES, 5]
    assert requests[2].model_params.timeout.data == 10 and requests[2].model_params.ninfer.data == 3


def test_groups_round_robin_shm_and_bytes(root: Path) -> None:
    env = child_env(root, NEURONCORE_GROUP_SIZES="[1,2]")
    with Client(env=env) as client, Client(env=child_env(root, NEURON_RTD_SHM_MAP="no")) as plain:
        assert client.session_id != plain.session_id and client.runtime_version.startswith("1.")
        models = [client.load(add_neff(f"m{i}")) for i in range(3)]
        assert [m.eg_id for m in models] == [client.groups[0], client.groups[1], client.groups[0]]
        egs = {e.eg.id: e.nc_count for e in client.list_egs().eg_info}
        assert egs == {client.groups[0]: 1, client.groups[1]: 2}
        listed = {m.nn_id: m.status for m in client.list_models().models}
        # the third model took the first group over: the first is in STANDBY
        assert listed[models[0].nn_id] == "STANDBY" and listed[models[2].nn_id] == "READY"
        assert client.use_shm and models[1].shm_in and not plain.use_shm
        twos = models[1].infer({"a": ONES, "b": ONES})["out"]
        other = plain.load(add_neff())
        assert not other.shm_in
        assert np.array_equal(other.infer({"a": ONES, "b": 2 * ONES})["out"], 3 * ONES)
        assert np.array_equal(twos, 2 * ONES)
        cookie = models[1].post({"a": ONES, "b": 3 * ONES})
        assert np.array_equal(models[1].wait(cookie)["out"], 4 * ONES)
        # the model in STANDBY is swapped in for its inference (and the other one goes to STANDBY)
        assert np.array_equal(models[0].infer({"a": ONES, "b": ONES})["out"], 2 * ONES)
        listed = {m.nn_id: m.status for m in client.list_models().models}
        assert listed[models[0].nn_id] == "READY" and listed[models[2].nn_id] == "STANDBY"
        paths = [b.path for b in models[1].shm_in.values()]
        assert all(os.path.exists(f"/dev/shm{p}") for p in paths)
    assert not any(os.path.exists(f"/dev/shm{p}") for p in paths)
    with Client(env=child_env(root)) as check:
        assert list(check.list_models().models) == [] and list(check.list_egs().eg_info) == []


def test_max_num_infers_bounds_posts(root: Path) -> None:
    with Client(env=child_env(root, NEURON_MAX_NUM_INFERS="1", NEURON_RTD_SHM_MAP="no")) as client:
        model = client.load(add_neff())
        cookie = model.post({"a": ONES, "b": ONES})
        with pytest.raises(LegacyError) as full:
            model.post({"a": ONES, "b": ONES})
        assert full.value.code == 7 and "NERR_QUEUE_FULL" in str(full.value)
        model.wait(cookie)


def test_no_daemon_names_the_address(tmp_path: Path) -> None:
    with pytest.raises(DaemonUnreachable, match=r"no neuron-rtd answers at unix:/run/neuron9.sock; start one"):
        Client("unix:/run/neuron9.sock", root=tmp_path, connect_timeout_s=0.5)


_KILLED_CLIENT = """
import sys, time
import numpy as np
sys.path.insert(0, sys.argv[1])
from legacy_helpers import add_neff
from nrt_lab.legacy.client import Client
c = Client()
m = c.load(add_neff())
m.infer({"a": np.ones((4, 3), np.float32), "b": np.ones((4, 3), np.float32)})
print(c.session_id, m.nn_id, flush=True)
time.sleep(120)
"""


def test_client_killed_mid_session_its_models_and_shm_go(root: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_CLIENT, str(REPO / "tests")], env=child_env(root),
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        session, nn = (int(x) for x in proc.stdout.readline().split())
        with Client(env=child_env(root, NEURON_RTD_SHM_MAP="no")) as watcher:
            assert nn in {m.nn_id for m in watcher.list_models().models}
            proc.send_signal(signal.SIGKILL)
            proc.wait(30)
            deadline = time.monotonic() + 30
            ended = f"[NRTD:session_monitor] Session {session} ended: unloaded 1 NN(s), unmapped 3 buffer(s)"
            while ended not in (root / "log" / "syslog").read_text():
                assert time.monotonic() < deadline, "the dead client's session was never cleaned up"
                time.sleep(0.05)
            assert nn not in {m.nn_id for m in watcher.list_models().models}
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
        for leftover in glob.glob(f"/dev/shm/aws_neuron_runtime_{proc.pid}_*"):
            os.unlink(leftover)


_GENERATED_CLIENT = """
import sys
import grpc, numpy as np
sys.path[:0] = [sys.argv[1], sys.argv[2]]
import importlib
svc, m = importlib.import_module(sys.argv[4]), importlib.import_module(sys.argv[5])
from legacy_helpers import add_neff
stub = svc.nmgr_v1Stub(grpc.insecure_channel(sys.argv[3]))
neff = add_neff()
reply = stub.load(iter([m.load_request(neff_size=len(neff)), m.load_request(neff_chunk=m.file_chunk(chunk=neff))]))
assert reply.status.code == 0, reply.status
x = np.ones((4, 3), np.float32).tobytes()
out = stub.infer(m.infer_request(h_nn=reply.h_nn, ifmap=[m.infer_io(name="a", buf=x), m.infer_io(name="b", buf=x)]))
assert out.status.code == 0, out.status
print(np.frombuffer(out.ofmap[0].buf, np.float32).sum(), stub.get_version(m.get_version_request()).runtime_version.major_num)
assert stub.unload(m.unload_request(h_nn=reply.h_nn)).status.code == 0
"""


def _generated_client_talks(proto_dir: Path, files: list[str], out: Path, root: Path, services: str,
                            messages: str) -> None:
    out.mkdir()
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", f"-I{proto_dir}", f"--python_out={out}",
                    f"--grpc_python_out={out}", *files], check=True, timeout=120)
    run = subprocess.run([sys.executable, "-c", _GENERATED_CLIENT, str(out), str(REPO / "tests"),
                          f"unix:{root / 'run' / 'neuron.sock'}", services, messages], env=child_env(root), capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["24.0", "1"]


def test_a_client_generated_from_our_proto_talks_to_the_daemon(root: Path, tmp_path: Path) -> None:
    pytest.importorskip("grpc_tools")
    _generated_client_talks(REPO / "nrt_lab" / "legacy" / "proto", ["nrt_v1.proto"], tmp_path / "gen", root,
                            "nrt_v1_pb2_grpc", "nrt_v1_pb2")


def test_a_client_generated_from_the_public_proto_talks_to_the_daemon(root: Path, tmp_path: Path) -> None:
    pytest.importorskip("grpc_tools")
    directory = os.environ.get("NRT_LAB_AWS_PROTO_DIR")
    if not directory:
        pytest.skip("set NRT_LAB_AWS_PROTO_DIR to a directory holding aws-neuron-runtime-proto's .proto files")
    files = ["common.proto", "nerr.proto", "nmetric.proto", "nmgr.proto", "nmgr_service.proto"]
    _generated_client_talks(Path(directory), files, tmp_path / "gen", root, "nmgr_service_pb2_grpc", "nmgr_pb2")


def test_ncg_count_and_a_daemon_dying_under_a_client() -> None:
    for state in short_root():
        assert daemon_ncg_count("unix:/run/neuron.sock", state, timeout_s=0.5) is None
        daemon = start_daemon(state)
        client = Client(env=child_env(state, NEURONCORE_GROUP_SIZES="2,2", NEURON_RTD_SHM_MAP="no"))
        try:
            model = client.load(add_neff())
            assert daemon_ncg_count("unix:/run/neuron.sock", state) == 2
            daemon.stop(signal.SIGKILL)
            with pytest.raises(DaemonUnreachable, match=r"neuron-rtd at unix:/run/neuron.sock failed during infer"):
                model.infer({"a": ONES, "b": ONES})
        finally:
            client.close()
            daemon.stop()
