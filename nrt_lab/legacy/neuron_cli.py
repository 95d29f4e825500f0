"""``neuron-cli``: the Runtime 1.x tool (package aws-neuron-tools) that talks to a ``neuron-rtd`` daemon: list and
manage models and NeuronCore groups (docs/legacy_daemon.md). In maintenance mode since Neuron 1.16.0: every run
says so on stderr and names what replaces each command with Runtime 2.x.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import grpc

from nrt_lab.driver import StateError, resolve_root
from nrt_lab.legacy.client import DaemonUnreachable, connect
from nrt_lab.legacy.paths import DEFAULT_ADDRESS
from nrt_lab.legacy.proto import nrt_lab_ext_pb2 as ext
from nrt_lab.legacy.proto import nrt_lab_ext_pb2_grpc as ext_grpc
from nrt_lab.legacy.proto import nrt_v1_pb2 as pb
from nrt_lab.legacy.proto import nrt_v1_pb2_grpc as pb_grpc

__all__ = ["MAINTENANCE_NOTICE", "format_table", "main"]

MAINTENANCE_NOTICE = (
    "neuron-cli is in maintenance mode since Neuron 1.16.0 and works only with Runtime 1.x (neuron-rtd). "
    "With Runtime 2.x use instead: list-model -> neuron-ls, neuron-top or neuron-monitor; create-ncg, destroy-ncg, "
    "list-ncg and reset -> not needed (libnrt frees every resource when a process exits)."
)
_MAX_NEFF_BYTES = 256 << 20


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A bordered text table (what neuron-cli prints)."""
    cells = [[str(c) for c in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    rule = "+" + "+".join("-" * (w + 2) for w in widths) + "+"

    def line(values: Sequence[str]) -> str:
        return "|" + "|".join(f" {v:<{w}} " for v, w in zip(values, widths, strict=True)) + "|"

    out = [rule, line(list(headers)), rule, *(line(r) for r in cells)]
    if cells:
        out.append(rule)
    return "\n".join(out) + "\n"


class _CliError(Exception):
    """A command failed; the message is printed after ``neuron-cli: error:``."""


def _check(status: pb.status, call: str) -> None:
    if status.code != 0:
        name = pb.nerr.Name(status.code) if status.code in pb.nerr.values() else str(status.code)
        raise _CliError(f"{call} failed with {name} ({status.code}): {status.details.decode('utf-8', 'replace').strip()}")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="neuron-cli", description="Manage models on a Neuron Runtime 1.x daemon "
                                "(neuron-rtd). " + MAINTENANCE_NOTICE)
    p.add_argument("-a", "--address", help=f"daemon address (default: $NEURON_RTD_ADDRESS, else {DEFAULT_ADDRESS})")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("list-model", help="list loaded models")
    sub.add_parser("list-ncg", help="list NeuronCore groups")
    create = sub.add_parser("create-ncg", help="create a NeuronCore group")
    create.add_argument("--nc-count", type=int, default=0, help="NeuronCores (default: the largest free run)")
    destroy = sub.add_parser("destroy-ncg", help="destroy an empty NeuronCore group")
    destroy.add_argument("--ncg-id", type=int, required=True)
    load = sub.add_parser("load", help="load a NEFF (started at once)")
    load.add_argument("neff", help="path of the NEFF file")
    load.add_argument("--ncg-id", type=int, default=-1,
                      help="-1: the runtime creates a group; 0: neuron-cli creates one; >=1: an existing group")
    load.add_argument("--nc-count", type=int, default=1, help="NeuronCores of the group neuron-cli creates")
    load.add_argument("--enable-direct-file-load", action="store_true", help="let the daemon read the file itself")
    for name, what in (("start", "start a model"), ("stop", "stop a model (STANDBY)"), ("unload", "unload a model")):
        cmd = sub.add_parser(name, help=what)
        cmd.add_argument("model_id", type=int)
    sub.add_parser("reset", help="unload every model and destroy every group")
    return p


def _list_model(stub: pb_grpc.nmgr_v1Stub, extension: ext_grpc.nrt_lab_daemonStub) -> str:
    reply: ext.list_models_response = extension.list_models(ext.list_models_request())
    rows = [(m.uuid, m.nn_id, m.status, m.device_start_index, m.nc_start_index, m.nc_count, m.eg_id, m.name)
            for m in reply.models]
    headers = ("UUID", "MODEL ID", "MODEL STATUS", "NEURON DEVICE START INDEX", "NC INDEX", "NC COUNT", "NCG ID",
               "NAME")
    return f"Found {len(rows)} model(s)\n" + format_table(headers, rows)


def _list_ncg(stub: pb_grpc.nmgr_v1Stub) -> str:
    reply: pb.out_list_egs = stub.list_egs(pb.empty())
    _check(reply.status, "list_egs")
    rows = [(e.eg.id, e.nc_count, e.mla_start_index, e.nc_start_index) for e in reply.eg_info]
    head = f"Device count {reply.mla_count} NC count {reply.nc_count}\nFound {len(rows)} NCG's\n"
    return head + format_table(("NCG ID", "NC COUNT", "DEVICE START INDEX", "NC START INDEX"), rows)


def _load(stub: pb_grpc.nmgr_v1Stub, args: argparse.Namespace) -> str:
    path = Path(args.neff)
    if args.ncg_id < -1:
        raise _CliError(f"--ncg-id {args.ncg_id} is invalid; accepted: -1 (runtime creates), 0 (neuron-cli creates) "
                        "or an existing NCG id >= 1")
    if args.enable_direct_file_load:
        data = b""
        if not path.is_file():
            raise _CliError(f"{path}: no such NEFF file")
    else:
        try:
            size = path.stat().st_size
            if size > _MAX_NEFF_BYTES:
                raise _CliError(f"{path} is {size} bytes, over the {_MAX_NEFF_BYTES}-byte limit")
            data = path.read_bytes()
        except OSError as exc:
            raise _CliError(f"cannot read NEFF {path}: {exc.strerror}") from None
    eg = args.ncg_id
    created = ""
    if eg == 0:
        made: pb.create_eg_response = stub.create_eg(pb.create_eg_request(nc_count=args.nc_count))
        _check(made.status, "create_eg")
        eg = made.h_eg.id
        created = f"Created NCG {eg} with {made.nc_count} NC(s)\n"

    def requests() -> object:
        if eg > 0:
            yield pb.load_request(h_eg=pb.h_eg(id=eg))
        if args.enable_direct_file_load:
            yield pb.load_request(neff_file=str(path.resolve()))
            return
        yield pb.load_request(neff_size=len(data))
        for offset in range(0, len(data), 1 << 20):
            yield pb.load_request(neff_chunk=pb.file_chunk(chunk=data[offset:offset + (1 << 20)]))

    reply: pb.load_response = stub.load(requests())
    _check(reply.status, "load")
    if eg > 0:
        _check(stub.start(pb.start_request(h_nn=reply.h_nn)).status, "start")
    return created + f"Loaded model {reply.h_nn.id} ({path.name})" + (f" into NCG {eg}" if eg > 0 else "") + "\n"


def _run(args: argparse.Namespace, address: str, root: Path) -> str:
    channel = connect(address, root, timeout_s=3.0)
    try:
        stub = pb_grpc.nmgr_v1Stub(channel)  # type: ignore[no-untyped-call]
        if args.command == "list-model":
            return _list_model(stub, ext_grpc.nrt_lab_daemonStub(channel))  # type: ignore[no-untyped-call]
        if args.command == "list-ncg":
            return _list_ncg(stub)
        if args.command == "create-ncg":
            made: pb.create_eg_response = stub.create_eg(pb.create_eg_request(nc_count=max(0, args.nc_count)))
            _check(made.status, "create_eg")
            return f"Created NCG {made.h_eg.id} with {made.nc_count} NC(s)\n"
        if args.command == "destroy-ncg":
            _check(stub.destroy_eg(pb.destroy_eg_request(h_eg=pb.h_eg(id=args.ncg_id))).status, "destroy_eg")
            return f"Destroyed NCG {args.ncg_id}\n"
        if args.command == "load":
            return _load(stub, args)
        if args.command in ("start", "stop", "unload"):
            nn = pb.h_nn(id=args.model_id)
            call = {"start": (stub.start, pb.start_request), "stop": (stub.stop, pb.stop_request),
                    "unload": (stub.unload, pb.unload_request)}[args.command]
            _check(call[0](call[1](h_nn=nn)).status, args.command)
            done = {"start": "Started", "stop": "Stopped", "unload": "Unloaded"}[args.command]
            return f"{done} model {args.model_id}\n"
        _check(stub.unload_all(pb.empty()), "unload_all")
        return "Reset: every model unloaded and every NCG destroyed\n"
    finally:
        channel.close()


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    """Run one neuron-cli command; 1 with one error line when it fails, 2 on bad usage."""
    sys.stderr.write(f"neuron-cli: {MAINTENANCE_NOTICE}\n")
    args = _parser().parse_args(argv)
    environment = dict(os.environ if env is None else env)
    address = args.address or environment.get("NEURON_RTD_ADDRESS") or DEFAULT_ADDRESS
    try:
        root = resolve_root(environment)
        out = _run(args, address, root)
    except (StateError, ValueError) as exc:
        sys.stderr.write(f"neuron-cli: error: {exc}\n")
        return 1
    except DaemonUnreachable as exc:
        sys.stderr.write(f"neuron-cli: error: {exc}\n")
        return 1
    except _CliError as exc:
        sys.stderr.write(f"neuron-cli: error: {exc}\n")
        return 1
    except grpc.RpcError as exc:
        sys.stderr.write(f"neuron-cli: error: neuron-rtd at {address} failed: {exc.details() or exc.code()}\n")
        return 1
    try:
        sys.stdout.write(out)
        sys.stdout.flush()
    except BrokenPipeError:
        pass
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
