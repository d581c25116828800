"""The committed generated code in proto/ must match proto/*.proto, and the
wire facts the plugin host relies on must hold."""
import filecmp
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PROTO = ROOT / "proto"
GEN = ROOT / "scripts" / "gen-proto"
HINT = "generated protobuf code is stale: run scripts/gen-proto and commit proto/"


def _generated(d: pathlib.Path) -> set[str]:
    return {p.name for p in d.iterdir() if p.name.endswith(("_pb2.py", "_grpc.py"))}


def test_generated_code_is_fresh(tmp_path):
    env = dict(os.environ, PYTHON=sys.executable)
    run = subprocess.run([str(GEN), str(tmp_path)], cwd=ROOT, env=env,
                         capture_output=True, text=True)
    assert run.returncode == 0, f"scripts/gen-proto failed:\n{run.stderr}"
    fresh, committed = _generated(tmp_path / "proto"), _generated(PROTO)
    # One _pb2 and one _grpc module per .proto file.
    stems = {p.stem for p in PROTO.glob("*.proto")}
    assert fresh == {f"{s}_pb2.py" for s in stems} | {f"{s}_grpc.py" for s in stems}
    missing, extra = fresh - committed, committed - fresh
    assert not missing, f"{HINT} (missing: {sorted(missing)})"
    assert not extra, f"{HINT} (no longer generated: {sorted(extra)})"
    _, mismatch, errors = filecmp.cmpfiles(tmp_path / "proto", PROTO, sorted(fresh), shallow=False)
    assert not mismatch and not errors, f"{HINT} (differs: {sorted(mismatch + errors)})"


def _fields(msg) -> dict[str, tuple[int, int]]:
    """name -> (number, descriptor type) for a generated message class."""
    return {f.name: (f.number, f.type) for f in msg.DESCRIPTOR.fields}


def test_wire_facts():
    from google.protobuf.descriptor import FieldDescriptor as F
    from proto import backend_pb2 as pb, grpc_broker_pb2, multiplexing_pb2, logical_version_pb2

    req = _fields(pb.Request)
    assert req["operation"] == (3, F.TYPE_STRING)
    assert req["path"] == (4, F.TYPE_STRING)
    assert req["data"] == (5, F.TYPE_STRING)
    assert req["unauthenticated"] == (19, F.TYPE_BOOL)
    assert req["mount_point"] == (12, F.TYPE_STRING)

    args = _fields(pb.HandleRequestArgs)
    assert args == {"storage_id": (1, F.TYPE_UINT32), "request": (2, F.TYPE_MESSAGE)}
    assert pb.HandleRequestArgs.DESCRIPTOR.fields_by_name["request"].message_type.full_name == "pb.Request"

    assert _fields(pb.ProtoError) == {
        "err_type": (1, F.TYPE_UINT32), "err_msg": (2, F.TYPE_STRING), "err_code": (3, F.TYPE_INT64)}
    assert _fields(pb.HandleRequestReply) == {"response": (1, F.TYPE_MESSAGE), "err": (2, F.TYPE_MESSAGE)}

    resp = _fields(pb.Response)
    assert resp["data"] == (3, F.TYPE_STRING) and resp["warnings"][0] == 5 and resp["headers"][0] == 7
    # Raw HTTP replies travel inside the JSON data, not as protobuf fields.
    assert not any(name.startswith("http") for name in resp)

    lease = _fields(pb.LeaseOptions)
    assert lease["TTL"] == (1, F.TYPE_INT64) and lease["issue_time"] == (4, F.TYPE_MESSAGE)
    assert _fields(pb.HandleExistenceCheckReply) == {
        "check_found": (1, F.TYPE_BOOL), "exists": (2, F.TYPE_BOOL), "err": (3, F.TYPE_MESSAGE)}
    assert _fields(pb.SetupArgs)["broker_id"] == (1, F.TYPE_UINT32)
    assert _fields(pb.StorageEntry) == {
        "key": (1, F.TYPE_STRING), "value": (2, F.TYPE_BYTES), "seal_wrap": (3, F.TYPE_BOOL)}
    # OpenBao transactions ride on field 2 of the storage args.
    assert _fields(pb.StorageGetArgs)["txn"] == (2, F.TYPE_STRING)
    assert _fields(pb.Connection)["remote_port"] == (3, F.TYPE_INT32)

    conn = _fields(grpc_broker_pb2.ConnInfo)
    assert conn["service_id"] == (1, F.TYPE_UINT32) and conn["knock"] == (4, F.TYPE_MESSAGE)
    assert _fields(multiplexing_pb2.MultiplexingSupportResponse) == {"supported": (1, F.TYPE_BOOL)}
    assert _fields(logical_version_pb2.VersionReply) == {"plugin_version": (1, F.TYPE_STRING)}


@pytest.mark.parametrize("module, base, path, methods", [
    ("backend_grpc", "BackendBase", "pb.Backend",
     ["HandleRequest", "SpecialPaths", "HandleExistenceCheck", "Cleanup", "InvalidateKey",
      "Setup", "Initialize", "Type"]),
    ("grpc_broker_grpc", "GRPCBrokerBase", "plugin.GRPCBroker", ["StartStream"]),
    ("grpc_controller_grpc", "GRPCControllerBase", "plugin.GRPCController", ["Shutdown"]),
    ("grpc_stdio_grpc", "GRPCStdioBase", "plugin.GRPCStdio", ["StreamStdio"]),
    ("multiplexing_grpc", "PluginMultiplexingBase", "pluginutil.multiplexing.PluginMultiplexing",
     ["MultiplexingSupport"]),
    ("logical_version_grpc", "PluginVersionBase", "logical.PluginVersion", ["Version"]),
])
def test_served_rpc_paths(module, base, path, methods):
    """The method paths the server calls on the plugin must be exactly these."""
    import importlib
    cls = getattr(importlib.import_module(f"proto.{module}"), base)
    impl = type("Impl", (cls,), {m: (lambda self, stream: None) for m in methods})()
    assert set(impl.__mapping__()) == {f"/{path}/{m}" for m in methods}


def test_client_rpc_paths():
    """The plugin calls these on the server through the brokered connection."""
    from proto import backend_grpc
    storage = backend_grpc.StorageStub(object())
    system = backend_grpc.SystemViewStub(object())
    assert storage.Get.name == "/pb.Storage/Get"
    assert storage.Put.name == "/pb.Storage/Put"
    assert storage.List.name == "/pb.Storage/List"
    assert storage.BeginTx.name == "/pb.Storage/BeginTx"
    assert system.MaxLeaseTTL.name == "/pb.SystemView/MaxLeaseTTL"
