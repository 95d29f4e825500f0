"""neuron-rtd as a real process: the nrt gRPC services over a Unix socket (and loopback TCP), NCG flows, queueing,
timeouts, nerr codes and details, logs, device ownership, SIGTERM / SIGKILL, two daemons, bad input
(docs/legacy_daemon.md)."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import grpc
import jsonschema
import numpy as np
import pytest
from legacy_helpers import add_neff, child_env, short_root, start_daemon, write_config

import nrt_lab
from nrt_lab.driver import inject_fault, open_machine
from nrt_lab.legacy.client import channel_target
from nrt_lab.legacy.daemon import main as daemon_main
from nrt_lab.legacy.proto import nrt_v1_pb2 as pb
from nrt_lab.legacy.proto import nrt_v1_pb2_grpc as pb_grpc
from nrt_lab.tools.neuron_monitor import ConfigError, NeuronMonitor, parse_config
from nrt_lab.tools.neuron_top import daemon_addresses, once_output

ONES = np.ones((4, 3), np.float32)


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[Path, pb_grpc.nmgr_v1Stub, int]]:
    """One daemon on all four devices of an inf1.6xlarge, shared by the protocol tests (each cleans up)."""
    for root in short_root():
        daemon = start_daemon(root, "-x")
        channel = grpc.insecure_channel(channel_target("unix:/run/neuron.sock", root))
        try:
            yield root, pb_grpc.nmgr_v1Stub(channel), daemon.pid
        finally:
            channel.close()
            assert daemon.stop() == 0, daemon.output()


def _load(stub: pb_grpc.nmgr_v1Stub, neff: bytes, eg: int = 0, **params: int) -> pb.load_response:
    def requests() -> Iterator[pb.load_request]:
        if eg:
            yield pb.load_request(h_eg=pb.h_eg(id=eg))
        if params:
            yield pb.load_request(model_params=pb.model_params(**{k: pb.u32(data=v) for k, v in params.items()}))
        yield pb.load_request(neff_size=len(neff))
        for i in range(0, len(neff), 1 << 20):
            yield pb.load_request(neff_chunk=pb.file_chunk(chunk=neff[i:i + (1 << 20)]))
    return stub.load(requests())


def _infer_request(nn: int, a: np.ndarray = ONES, b: np.ndarray = ONES) -> pb.infer_request:
    return pb.infer_request(h_nn=pb.h_nn(id=nn), ifmap=[pb.infer_io(name="a", buf=a.tobytes()),
                                                         pb.infer_io(name="b", buf=b.tobytes())])


def test_explicit_flow_one_running_nn_per_ncg(served: tuple[Path, pb_grpc.nmgr_v1Stub, int]) -> None:
    root, stub, _ = served
    made = stub.create_eg(pb.create_eg_request(nc_count=2))
    assert made.status.code == 0 and made.nc_count == 2
    eg = made.h_eg.id
    first = _load(stub, add_neff(), eg)
    second = _load(stub, add_neff("add2"), eg)
    assert first.status.code == 0 and second.status.code == 0
    assert second.h_nn.id == first.h_nn.id + 1 and first.h_nn.id >= 10001
    # loaded into an explicit NCG, nothing runs until started
    standby = stub.infer(_infer_request(first.h_nn.id))
    assert standby.status.code == 8
    assert stub.start(pb.start_request(h_nn=first.h_nn)).status.code == 0
    out = stub.infer(_infer_request(first.h_nn.id))
    assert out.status.code == 0
    assert np.array_equal(np.frombuffer(out.ofmap[0].buf, np.float32).reshape(4, 3), ONES + ONES)
    # starting the second puts the first in STANDBY
    assert stub.start(pb.start_request(h_nn=second.h_nn)).status.code == 0
    assert stub.infer(_infer_request(first.h_nn.id)).status.code == 8
    assert stub.infer(_infer_request(second.h_nn.id)).status.code == 0
    listed = stub.list_egs(pb.empty())
    assert [(e.eg.id, e.nc_count) for e in listed.eg_info] == [(eg, 2)]
    assert (listed.mla_count, listed.nc_count) == (4, 16)
    busy = stub.destroy_eg(pb.destroy_eg_request(h_eg=pb.h_eg(id=eg)))
    assert busy.status.code == 8 and b"unload them first" in busy.status.details
    for nn in (first.h_nn, second.h_nn):
        assert stub.stop(pb.stop_request(h_nn=nn)).status.code == 0
        assert stub.unload(pb.unload_request(h_nn=nn)).status.code == 0
    assert stub.destroy_eg(pb.destroy_eg_request(h_eg=pb.h_eg(id=eg))).status.code == 0
    assert stub.list_egs(pb.empty()).eg_info == []
    missing = stub.unload(pb.unload_request(h_nn=first.h_nn))
    assert missing.status.code == 3
    assert missing.status.details == f"[NMGR:kmgr_unload_nn] Failed to find model: {first.h_nn.id}\n".encode()


def test_implicit_flow_and_nc_and_version_errors(served: tuple[Path, pb_grpc.nmgr_v1Stub, int]) -> None:
    root, stub, _ = served
    loaded = _load(stub, add_neff())
    assert loaded.status.code == 0
    assert stub.infer(_infer_request(loaded.h_nn.id)).status.code == 0  # started at once
    assert len(stub.list_egs(pb.empty()).eg_info) == 1
    assert stub.unload(pb.unload_request(h_nn=loaded.h_nn)).status.code == 0
    assert stub.list_egs(pb.empty()).eg_info == []  # its private NCG went with it
    small = stub.create_eg(pb.create_eg_request(nc_count=1))
    big = _load(stub, add_neff(cores=2), small.h_eg.id)
    assert big.status.code == 9
    assert big.status.details == b"[NMGR:kmgr_load_nn] Requested number of NCs: 2 exceeds the total available number: 1\n"
    too_many = stub.create_eg(pb.create_eg_request(nc_count=17))
    assert too_many.status.code == 9
    assert b"Not enough free NCs to allocate 17 members group" in too_many.status.details
    assert stub.destroy_eg(pb.destroy_eg_request(h_eg=small.h_eg)).status.code == 0
    new = _load(stub, add_neff(version=(2, 0)))
    assert new.status.code == 10
    assert new.status.details == b"[NMGR:kmgr_load_nn] NEFF version mismatch supported: 1.1 received: 2.0\n"
    syslog = (root / "log" / "syslog").read_text()
    assert "[NMGR:kmgr_load_nn] NEFF version mismatch supported: 1.1 received: 2.0" in syslog
    assert f"nrtd[{served[2]}]: [NRTD:RunServer] Server listening on unix:/run/neuron.sock" in syslog


def test_queue_full_timeout_and_bad_input_codes(served: tuple[Path, pb_grpc.nmgr_v1Stub, int]) -> None:
    root, stub, _ = served
    nn = _load(stub, add_neff(), ninfer=2, timeout=1).h_nn
    cookies = [stub.infer_post(_infer_request(nn.id)) for _ in range(2)]
    assert [c.status.code for c in cookies] == [0, 0]
    full = stub.infer_post(_infer_request(nn.id))
    assert full.status.code == 7
    for c in cookies:
        done = stub.infer_wait(pb.infer_wait_request(cookie=c.cookie))
        assert done.status.code == 0 and len(done.ofmap) == 1
    assert stub.infer_post(_infer_request(nn.id)).status.code == 0  # room again
    wrong = stub.infer(pb.infer_request(h_nn=nn, ifmap=[pb.infer_io(name="a", buf=ONES.tobytes())]))
    assert wrong.status.code == 1002
    assert wrong.status.details == b"[NMGR:infer] Wrong number of ifmaps, expected: 2, received: 1\n"
    short = stub.infer(_infer_request(nn.id, a=ONES[:2]))
    assert short.status.code == 1002 and b"is 24 bytes, expected 48" in short.status.details
    unknown = stub.infer_wait(pb.infer_wait_request(cookie=999999))
    assert unknown.status.code == 3
    # a hung execution: infer_wait gives up after the model's timeout (1 s) with NERR_TIMEOUT
    inject_fault(root, kind="hang", core=0)
    hung = stub.infer(_infer_request(nn.id))
    assert hung.status.code == 5 and b"timed out after 1 s" in hung.status.details
    assert stub.unload(pb.unload_request(h_nn=nn)).status.code == 0


def test_oversized_and_malformed_load_streams(served: tuple[Path, pb_grpc.nmgr_v1Stub, int]) -> None:
    _, stub, _ = served
    huge = stub.load(iter([pb.load_request(neff_size=1 << 40)]))
    assert huge.status.code == 2 and b"exceeds the daemon's limit" in huge.status.details
    neff = add_neff()
    lying = stub.load(iter([pb.load_request(neff_size=100), pb.load_request(neff_chunk=pb.file_chunk(chunk=neff))]))
    assert lying.status.code == 2 and b"more than 100 bytes (its neff_size)" in lying.status.details
    empty = stub.load(iter([pb.load_request(session_id=0)]))
    assert empty.status.code == 2 and b"carried no NEFF" in empty.status.details
    garbage = stub.load(iter([pb.load_request(neff_chunk=pb.file_chunk(chunk=b"\x00" * 2048))]))
    assert garbage.status.code == 2
    # raw garbage on the socket: the daemon drops that connection and keeps serving
    with socket.socket(socket.AF_UNIX) as raw:
        raw.connect(str(served[0] / "run" / "neuron.sock"))
        raw.sendall(os.urandom(4096))
    assert stub.get_version(pb.get_version_request()).runtime_version.full_version.startswith("1.")


def test_daemon_owns_its_devices_like_libnrt(served: tuple[Path, pb_grpc.nmgr_v1Stub, int]) -> None:
    root, _, pid = served
    owners = open_machine(root).owners()
    daemon = [o for o in owners if o.pid == pid]
    assert len(daemon) == 1 and daemon[0].is_daemon
    record = daemon[0]
    assert record.command.startswith("neuron-rtd")
    assert record.runtime_version.startswith("1.")
    assert record.cores == tuple(range(16))
    assert record.extra["address"] == "unix:/run/neuron.sock" and record.extra["instance"] == ""
    with pytest.raises(nrt_lab.NrtError) as busy:
        nrt_lab.init(env={"NRT_LAB_ROOT": str(root)}, root=root)
    assert "NeuronCore(s) not available" in busy.value.message


def test_sigterm_cleans_up_and_sigkill_frees_devices_at_once() -> None:
    for root in short_root():
        daemon = start_daemon(root, "-x", "-l", "3")
        sock = root / "run" / "neuron.sock"
        assert sock.exists() and daemon.pid_file.exists()
        assert daemon.stop() == 0
        assert not sock.exists() and not daemon.pid_file.exists()
        assert "Server listening" not in daemon.output()  # -l 3: errors only
        assert open_machine(root).owners() == []
        killed = start_daemon(root)
        assert killed.stop(signal.SIGKILL) == -signal.SIGKILL
        runtime = nrt_lab.init(env={"NRT_LAB_ROOT": str(root)}, root=root)  # no wait: the kernel dropped the locks
        try:
            assert len(runtime.cores) == 16
        finally:
            nrt_lab.close()
        again = start_daemon(root)  # a stale socket file of the killed daemon does not stop a new one
        assert again.stop() == 0


def test_two_daemons_disjoint_and_overlapping_devices_and_tcp() -> None:
    for root in short_root():
        write_config(root, "nrtd0.json", {"name": "nrtd0", "server_port": "unix:/run/neuron.sock0", "devices": [0]})
        write_config(root, "nrtd1.json", {"name": "nrtd1", "server_port": "unix:/run/neuron.sock1",
                                          "devices": [1, 2]})
        write_config(root, "nrtd2.json", {"name": "nrtd2", "server_port": "unix:/run/neuron.sock2",
                                          "devices": [2, 3]})
        first = start_daemon(root, instance="0")
        second = start_daemon(root, instance="1")
        owners = {o.pid: o for o in open_machine(root).owners()}
        assert owners[first.pid].cores == (0, 1, 2, 3)
        assert owners[second.pid].cores == tuple(range(4, 12))
        assert owners[second.pid].extra["instance"] == "1"
        assert (root / "run" / "neuron-rtd@1.pid").exists()
        clash = start_daemon(root, instance="2", wait=False)
        assert clash.wait_exit() == 1
        assert "cannot claim devices [2, 3]" in clash.output()
        assert f"[TDRV:ncdev_device_init] neuron:ncdev_device_init: device inuse by pid:{second.pid}" in \
            (root / "log" / "syslog").read_text()
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        tcp = start_daemon(root, "-g", f"127.0.0.1:{port}", "-t", _bdf(root, 3))
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        try:
            listed = pb_grpc.nmgr_v1Stub(channel).list_egs(pb.empty())
            assert (listed.mla_count, listed.nc_count) == (1, 4)
        finally:
            channel.close()
        for d in (tcp, second, first):
            assert d.stop() == 0, d.output()


def _bdf(root: Path, device: int) -> str:
    return open_machine(root).instance().devices[device].bdf


@pytest.mark.parametrize(("files", "args", "message"), [
    ({"neuron-rtd.config": "{not json"}, [], "is not valid JSON"),
    ({"neuron-rtd.config": '{"devices": "all"}'}, [], "devices is 'all'; accepted: a non-empty list"),
    ({"neuron-rtd.config": '{"colour": 1}'}, [], "unknown key(s) colour; accepted:"),
    ({"neuron-rtd.config": '{"devices": [0, 2]}'}, [], "are not neighbours"),
    ({}, ["-i", "9"], "unknown instance '9': config file /opt/aws/neuron/config/nrtd9.json does not exist"),
    ({}, ["-g", "10.0.0.1:5000"], "binds loopback only"),
    ({}, ["-g", "unix:relative"], "accepted: unix:/absolute/path or 127.0.0.1:PORT"),
    ({}, ["-t", "0000:99:00.0"], "-t 0000:99:00.0: no Neuron device at that PCI BDF"),
])
def test_bad_configs_and_options_fail_with_one_clear_line(files: dict[str, str], args: list[str], message: str,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    for root in short_root():
        for name, text in files.items():
            write_config(root, name, text)
        assert daemon_main(args, env=child_env(root)) == 1
        err = capsys.readouterr().err
        errors = [line for line in err.splitlines() if line.startswith("neuron-rtd:")]
        assert len(errors) == 1 and message in errors[0], err
        assert "Traceback" not in err
        assert open_machine(root).owners() == []
        assert message in (root / "log" / "syslog").read_text()


def test_no_driver_refuses_to_start(capsys: pytest.CaptureFixture[str]) -> None:
    for root in short_root():
        open_machine(root).uninstall_driver()
        assert daemon_main([], env=child_env(root)) == 1
        assert "no Neuron driver: /dev/neuron* does not exist" in capsys.readouterr().err


def test_version_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        daemon_main(["-v"])
    assert done.value.code == 0 and capsys.readouterr().out.strip().startswith("neuron-rtd 1.")


def test_neuron_monitor_polls_the_address_and_warns_when_nothing_answers(
        served: tuple[Path, pb_grpc.nmgr_v1Stub, int]) -> None:
    root, stub, pid = served
    nn = _load(stub, add_neff()).h_nn
    assert stub.infer(_infer_request(nn.id)).status.code == 0
    groups = [{"type": "memory_used"}, {"type": "neuroncore_counters"}]
    config = parse_config({"period": "1s", "neuron_runtimes": [
        {"address": "unix:/run/neuron.sock", "metrics": groups},
        {"address": "unix:/run/neuron2.sock", "metrics": groups},
        {"tag_filter": ".*", "metrics": groups},
    ]})
    now = [100.0]
    log = io.StringIO()
    mon = NeuronMonitor(config, root=root, verbose=1, log=log, clock=lambda: now[0])
    mon.start()
    now[0] += 1.0
    report = mon.collect()
    schema = json.loads((Path(__file__).parent / "schemas" / "neuron_monitor_report.schema.json").read_text())
    errors = [e.message for e in jsonschema.Draft202012Validator(schema).iter_errors(report)]
    assert not errors, errors
    entries = report["neuron_runtime_data"]
    assert all(e["pid"] != pid for e in entries)  # a daemon is not a 2.x runtime
    polled = next(e for e in entries if e["address"] == "unix:/run/neuron.sock")
    assert (polled["pid"], polled["neuron_runtime_tag"], polled["error"]) == (0, "unix:/run/neuron.sock", "")
    assert set(polled["report"]) == {"memory_used", "neuroncore_counters"}
    silent = next(e for e in entries if e["address"] == "unix:/run/neuron2.sock")
    assert silent["pid"] == 0 and "no Neuron Runtime 1.x daemon (neuron-rtd) answers at unix:/run/neuron2.sock" \
        in silent["error"]
    assert "answers at unix:/run/neuron2.sock" in log.getvalue()
    with pytest.raises(ConfigError, match="both address and tag_filter"):
        parse_config({"neuron_runtimes": [{"address": "unix:/run/neuron.sock", "tag_filter": ".*"}]})
    top = once_output(period=0, root=root, sleep=lambda _s: None, addresses=["unix:/run/neuron2.sock"])
    assert "Runtime 1.x daemons (neuron-rtd)" in top
    assert re.search(r"unix:/run/neuron2.sock\s+nothing answers", top)
    assert re.search(rf"unix:/run/neuron.sock\s+pid {pid}  1\.6\.9\.0  nc0-nc15  1 model\(s\)", top)
    assert "neuron-rtd unix:/run/neuron.sock" in top  # the daemon's tab
    assert daemon_addresses(["unix:/b"], {"NEURON_RTD_ADDRESS": "unix:/a"}) == ["unix:/a", "unix:/b"]
    assert stub.unload(pb.unload_request(h_nn=nn)).status.code == 0


def test_daemon_and_2x_race_for_a_device_exactly_one_wins() -> None:
    for root in short_root():
        daemon = start_daemon(root, "-t", _bdf(root, 0), wait=False)
        try:
            runtime = nrt_lab.init(env={"NRT_LAB_ROOT": str(root), "NEURON_RT_VISIBLE_CORES": "0-3"}, root=root)
        except nrt_lab.NrtError as exc:
            assert "NeuronCore(s) not available" in exc.message
            daemon.wait_serving()  # the daemon won: it serves and holds device 0
            assert daemon.stop() == 0
        else:
            try:
                assert daemon.wait_exit() == 1 and "cannot claim devices [0]" in daemon.output()
            finally:
                runtime.close()


def test_infer_stream_answers_each_request_in_order(served: tuple[Path, pb_grpc.nmgr_v1Stub, int]) -> None:
    root, stub, _ = served
    nn = _load(stub, add_neff()).h_nn
    channel = grpc.insecure_channel(channel_target("unix:/run/neuron.sock", root))
    try:
        stream = pb_grpc.nmgr_streamStub(channel)
        requests = [_infer_request(nn.id, b=k * ONES) for k in (1.0, 2.0)] + [pb.infer_request(h_nn=pb.h_nn(id=1))]
        replies = list(stream.infer_stream(iter(requests)))
    finally:
        channel.close()
    assert [r.status.code for r in replies] == [0, 0, 3]
    assert [float(np.frombuffer(r.ofmap[0].buf, np.float32)[0]) for r in replies[:2]] == [2.0, 3.0]
    metrics = stub.read_all_metrics(pb.read_all_metrics_request())
    latency = metrics.nmgr_metrics[0]
    assert latency.metric_type == pb.NMGR_METRIC_INFER_LATENCY and latency.data[0].value_agg.count >= 2
    assert stub.read_all_metrics(pb.read_all_metrics_request()).nmgr_metrics[0].data == []  # taken
    assert stub.read_inference_counters(pb.empty()).nmgr_counters.infer_count >= 2
    assert stub.read_nc_time_in_use(pb.read_nc_time_in_use_request(vnc_id=99)).status.code == 2
    assert stub.unload(pb.unload_request(h_nn=nn)).status.code == 0
