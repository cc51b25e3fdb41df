"""qcompress.cache: content-addressed tensors and directories, written atomically."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import time
from pathlib import Path

import pytest
import torch

from qcompress.cache import CACHE_DIR_ENV, Cache, cache_key, default_cache_dir
from qcompress.fingerprint import fingerprint_of, fingerprint_path


class Counting:
    """A compute function that counts its calls."""

    def __init__(self, value: dict[str, torch.Tensor]) -> None:
        self.value = value
        self.calls = 0

    def __call__(self) -> dict[str, torch.Tensor]:
        self.calls += 1
        return self.value


def test_tensors_are_computed_once_then_hit(tmp_path: Path) -> None:
    cache = Cache(tmp_path)
    compute = Counting({"logits": torch.arange(6.0).reshape(3, 2)})
    parts = {"teacher": "abc", "split": "def"}
    first = cache.tensors("teacher-logits", parts, compute)
    second = cache.tensors("teacher-logits", parts, compute)
    assert compute.calls == 1
    assert torch.equal(first["logits"], second["logits"])
    key = cache_key("teacher-logits", parts)
    assert cache.events == [("teacher-logits", key, False), ("teacher-logits", key, True)]
    # The entry and its sidecar say what they are; no temporary files are left behind.
    entry = tmp_path / "teacher-logits" / f"{key}.pt"
    assert entry.is_file()
    sidecar = json.loads(entry.with_suffix(".json").read_text())
    assert sidecar == {"kind": "teacher-logits", "parts": parts,
                       "sha256": hashlib.sha256(entry.read_bytes()).hexdigest()}
    assert not list((tmp_path / "teacher-logits").glob("*.tmp"))


def test_tensors_survive_a_new_cache_object(tmp_path: Path) -> None:
    Cache(tmp_path).tensors("features", {"x": 1}, Counting({"features": torch.ones(2, 3)}))
    compute = Counting({"features": torch.zeros(2, 3)})
    again = Cache(tmp_path).tensors("features", {"x": 1}, compute)
    assert compute.calls == 0
    assert torch.equal(again["features"], torch.ones(2, 3))


def test_tensor_keys_differ_when_parts_differ(tmp_path: Path) -> None:
    cache = Cache(tmp_path)
    compute = Counting({"features": torch.ones(1)})
    cache.tensors("features", {"encoder": "a", "split": "s"}, compute)
    cache.tensors("features", {"encoder": "b", "split": "s"}, compute)
    cache.tensors("features", {"encoder": "a", "split": "t"}, compute)
    cache.tensors("other-kind", {"encoder": "a", "split": "s"}, compute)
    assert compute.calls == 4
    assert len({key for _, key, _ in cache.events}) == 4
    assert not any(hit for _, _, hit in cache.events)


def test_tensor_compute_that_raises_leaves_no_entry(tmp_path: Path) -> None:
    cache = Cache(tmp_path)

    def broken() -> dict[str, torch.Tensor]:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        cache.tensors("features", {"x": 1}, broken)
    assert not list(tmp_path.rglob("*.pt"))
    compute = Counting({"features": torch.ones(1)})
    cache.tensors("features", {"x": 1}, compute)
    assert compute.calls == 1


def test_directory_is_built_once_then_hit(tmp_path: Path) -> None:
    cache = Cache(tmp_path)
    builds: list[Path] = []

    def build(out: Path) -> None:
        builds.append(out)
        (out / "weights.bin").write_bytes(b"\x00" * 8)

    parts = {"base": "model", "recipe": {"epochs": 1}}
    first = cache.directory("teachers", parts, build)
    second = cache.directory("teachers", parts, build)
    assert first == second == tmp_path / "teachers" / cache_key("teachers", parts)
    assert len(builds) == 1
    assert builds[0] != first  # built in a staging folder, then moved into place
    assert (first / "weights.bin").read_bytes() == b"\x00" * 8
    marker = json.loads((first / "qcompress-cache.json").read_text())
    assert marker == {"kind": "teachers", "parts": parts,
                      "contents": fingerprint_path(first, exclude=("qcompress-cache.json",))}
    assert [hit for _, _, hit in cache.events] == [False, True]
    assert sorted(path.name for path in (tmp_path / "teachers").iterdir()) == [first.name]


def test_directory_build_that_raises_leaves_no_entry(tmp_path: Path) -> None:
    cache = Cache(tmp_path)

    def broken(out: Path) -> None:
        (out / "half-written.bin").write_bytes(b"\x01")
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError, match="interrupted"):
        cache.directory("teachers", {"base": "m"}, broken)
    kind_dir = tmp_path / "teachers"
    assert list(kind_dir.iterdir()) == []  # neither the entry nor the staging folder
    assert cache.events == []

    built = cache.directory("teachers", {"base": "m"}, lambda out: (out / "ok").write_text("1"))
    assert (built / "ok").read_text() == "1"
    assert cache.events[-1][2] is False


def test_directory_replaces_an_incomplete_leftover(tmp_path: Path) -> None:
    cache = Cache(tmp_path)
    parts = {"base": "m"}
    leftover = tmp_path / "teachers" / cache_key("teachers", parts)
    leftover.mkdir(parents=True)
    (leftover / "stale.bin").write_text("stale")  # no qcompress-cache.json: not an entry
    built = cache.directory("teachers", parts, lambda out: (out / "fresh.bin").write_text("new"))
    assert built == leftover
    assert sorted(path.name for path in built.iterdir()) == ["fresh.bin", "qcompress-cache.json"]


def test_directory_keys_differ_when_parts_differ(tmp_path: Path) -> None:
    cache = Cache(tmp_path)
    first = cache.directory("teachers", {"recipe": {"lr": 1e-4}}, lambda out: None)
    second = cache.directory("teachers", {"recipe": {"lr": 2e-4}}, lambda out: None)
    assert first != second
    assert [hit for _, _, hit in cache.events] == [False, False]


def test_default_cache_dir_follows_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path / "mine"))
    assert default_cache_dir() == tmp_path / "mine"
    monkeypatch.delenv(CACHE_DIR_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "qcompress"


def test_fingerprint_of_is_stable_and_order_insensitive_for_mappings() -> None:
    assert fingerprint_of({"a": 1, "b": 2}) == fingerprint_of({"b": 2, "a": 1})
    assert fingerprint_of({"a": 1}) != fingerprint_of({"a": 2})
    assert fingerprint_of("x", 1) != fingerprint_of("x", 2)
    assert len(fingerprint_of("anything")) == 16


def test_fingerprint_path_follows_contents_not_times(tmp_path: Path) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "weights.bin").write_bytes(b"abc")
    before = fingerprint_path(folder)

    def rewrite(content: bytes, mtime_s: int) -> None:
        # Explicit times: file clocks are coarse, and the digest memo is keyed by mtime.
        (folder / "weights.bin").write_bytes(content)
        os.utime(folder / "weights.bin", (mtime_s, mtime_s))

    rewrite(b"abc", 1_000_000)  # same bytes, another time
    assert fingerprint_path(folder) == before
    rewrite(b"abd", 2_000_000)
    assert fingerprint_path(folder) != before
    rewrite(b"abc", 3_000_000)
    assert fingerprint_path(folder) == before
    (folder / "extra.bin").write_bytes(b"")
    assert fingerprint_path(folder) != before


def test_a_new_cache_version_reuses_nothing(tmp_path: Path, monkeypatch) -> None:
    import qcompress.cache

    cache = Cache(tmp_path)
    parts = {"teacher": "t", "split": "s"}
    cache.tensors("teacher-logits", parts, lambda: {"logits": torch.zeros(1)})
    monkeypatch.setattr(qcompress.cache, "CACHE_VERSION", qcompress.cache.CACHE_VERSION + 1)
    cache.tensors("teacher-logits", parts, lambda: {"logits": torch.ones(1)})
    assert [hit for _, _, hit in cache.events] == [False, False]


# ---------------------------------------------------------------------------------------------
# Damaged entries are named, deleted and rebuilt; concurrent writers agree


def logits_entry(tmp_path: Path) -> tuple[Cache, list[str], Path, dict[str, str]]:
    problems: list[str] = []
    cache = Cache(tmp_path, on_problem=problems.append)
    parts = {"teacher": "t", "split": "s"}
    cache.tensors("teacher-logits", parts, lambda: {"logits": torch.arange(64.0)})
    path = tmp_path / "teacher-logits" / f"{cache_key('teacher-logits', parts)}.pt"
    return cache, problems, path, parts


@pytest.mark.parametrize("damage", ["flip a byte", "truncate", "empty", "lose the sidecar"])
def test_a_damaged_tensor_entry_is_named_deleted_and_rebuilt(tmp_path: Path, damage: str) -> None:
    cache, problems, path, parts = logits_entry(tmp_path)
    data = bytearray(path.read_bytes())
    if damage == "flip a byte":
        data[len(data) // 2] ^= 0x01  # a flipped bit deep in the tensor data: loads "fine"
        path.write_bytes(bytes(data))
    elif damage == "truncate":
        path.write_bytes(bytes(data[: len(data) // 2]))
    elif damage == "empty":
        path.write_bytes(b"")
    else:
        path.with_suffix(".json").unlink()
    compute = Counting({"logits": torch.arange(64.0)})
    value = cache.tensors("teacher-logits", parts, compute)
    assert compute.calls == 1  # rebuilt, not used
    assert torch.equal(value["logits"], torch.arange(64.0))
    assert len(problems) == 1 and str(path) in problems[0] and "deleted" in problems[0]
    again = Counting({"logits": torch.zeros(1)})
    assert torch.equal(cache.tensors("teacher-logits", parts, again)["logits"], torch.arange(64.0))
    assert again.calls == 0  # the rebuilt entry is whole


def test_a_damaged_directory_entry_is_rebuilt(tmp_path: Path) -> None:
    problems: list[str] = []
    cache = Cache(tmp_path, on_problem=problems.append)
    builds = []

    def build(out: Path) -> None:
        builds.append(out)
        (out / "weights.bin").write_bytes(b"\x00" * 64)

    entry = cache.directory("teachers", {"base": "m"}, build)
    (entry / "weights.bin").write_bytes(b"\x00" * 32)  # truncated weights
    assert cache.directory("teachers", {"base": "m"}, build) == entry
    assert len(builds) == 2 and "its files changed" in problems[0]
    assert (entry / "weights.bin").read_bytes() == b"\x00" * 64


def _slow_build(root: str, started: float, index: int, out_file: str) -> None:
    """One of two processes building the same directory entry at the same moment."""

    def build(out: Path) -> None:
        (out / "weights.bin").write_bytes(bytes([index]) * 1024)
        time.sleep(max(0.0, started + 1.0 - time.time()))  # both finish their build together

    problems: list[str] = []
    path = Cache(Path(root), on_problem=problems.append).directory("teachers", {"b": 1}, build)
    seen = (path / "weights.bin").read_bytes()[0]  # what this process then loads
    Path(out_file).write_text(json.dumps({"path": str(path), "problems": problems, "seen": seen}))


def test_two_processes_building_one_entry_agree(tmp_path: Path) -> None:
    """Neither deletes the other's finished entry: the first to finish wins, the second uses
    it, both succeed with the same whole entry."""
    context = multiprocessing.get_context("spawn")  # the CPU kernel's OpenMP is not fork-safe
    started = time.time() + 2.0  # after both processes have imported
    outs = [tmp_path / f"out{index}.json" for index in range(2)]
    workers = [
        context.Process(target=_slow_build, args=(str(tmp_path / "cache"), started, i, str(o)))
        for i, o in enumerate(outs)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
        assert worker.exitcode == 0
    results = [json.loads(out.read_text()) for out in outs]
    assert results[0]["path"] == results[1]["path"]
    assert results[0]["problems"] == results[1]["problems"] == []
    entry = Path(results[0]["path"])
    # Both use the first finisher's entry: the second did not replace it under the first.
    assert results[0]["seen"] == results[1]["seen"]
    assert (entry / "weights.bin").read_bytes() == bytes([results[0]["seen"]]) * 1024
    assert sorted(p.name for p in entry.parent.iterdir()) == [entry.name]  # no leftovers
    problems: list[str] = []
    Cache(tmp_path / "cache", on_problem=problems.append).directory(
        "teachers", {"b": 1}, lambda out: pytest.fail("a whole entry must be reused")
    )
    assert problems == []


def test_large_file_digests_are_remembered_across_processes(tmp_path: Path, monkeypatch) -> None:
    """The cache remembers the digest of a large file (an LLM's weights) on disk: the same
    fingerprint as hashing it, without reading it again; any write to the file, even one that
    puts its size and modification time back, makes it be hashed again."""
    import qcompress.fingerprint as fingerprint

    cache = Cache(tmp_path / "cache")
    weights = tmp_path / "model" / "weights.bin"
    weights.parent.mkdir()
    weights.write_bytes(b"a" * fingerprint.MEMO_MIN_BYTES)
    expected = fingerprint_path(weights.parent)
    assert cache.fingerprint_path(weights.parent) == expected
    assert len(list((tmp_path / "cache" / "digests").glob("*.json"))) == 1

    fingerprint._file_digest.cache_clear()  # as in a new process
    reads = []
    original = fingerprint._file_digest.__wrapped__
    monkeypatch.setattr(
        fingerprint, "_file_digest", lambda *key: reads.append(key) or original(*key)
    )
    assert cache.fingerprint_path(weights.parent) == expected
    assert reads == []  # remembered, not read

    stat = weights.stat()
    with weights.open("r+b") as handle:  # one byte flipped in place
        handle.write(b"b")
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # its time put back
    assert cache.fingerprint_path(weights.parent) != expected
    assert len(reads) == 1


def test_an_unwritable_digest_memo_only_costs_the_hashing(tmp_path: Path) -> None:
    import qcompress.fingerprint as fingerprint

    weights = tmp_path / "weights.bin"
    weights.write_bytes(b"x" * fingerprint.MEMO_MIN_BYTES)
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "digests").write_text("a file where the memo folder goes")
    assert Cache(tmp_path / "cache").fingerprint_path(weights) == fingerprint_path(weights)
