"""Readers and a safe writer for point-tracking data sets (TAP-Vid, Perception Test, npz).

Every reader turns its format into the library's canonical record::

    {"video": np.uint8 [T, H, W, 3], "points": np.float32 [n, T, 2], "occluded": np.bool_ [n, T],
     "name": str}

``points`` are normalised ``(x, y)``: ``x = pixel_x / W`` and ``y = pixel_y / H`` (raster
coordinates, as in TAP-Vid), so they do not depend on the frame size.  Each record is checked by
:func:`validate_record`; a bad one raises ``ValueError`` naming the file, the record and the problem.
Points must be finite where visible; non-finite values at occluded positions (which carry no
annotation) are replaced by 0.

Formats (see ``google-deepmind/tapnet``: ``tapnet/tapvid/README.md``, ``evaluation_datasets.py``,
``generate_tapvid.py``, and ``google-deepmind/perception_test``: ``README.md``,
``baselines/single_point_tracking.ipynb``):

* **TAP-Vid DAVIS** (:func:`load_davis`): a pickle of ``{video_name: {"video", "points",
  "occluded"}}`` with the arrays above (RoboTAP uses the same layout).
* **TAP-Vid RGB-Stacking** (:func:`load_rgb_stacking`): the same records in a pickled *list*
  (no names; they are named ``<file stem>_<index>``).
* **TAP-Vid Kinetics** (:func:`load_kinetics`): shards ``NNNN_of_0010.pkl``, each a pickled list
  of records whose ``video`` holds one JPEG-encoded frame (bytes) per frame (25 fps, at most 250
  frames) and whose ``points`` are float64; decoded here with Pillow.  The records carry no name,
  so they are named by ``video_id``/``name`` when present, else ``<shard stem>_<index>``.
* **Perception Test** (:func:`load_perception_test`): a JSON dict ``{video_id: {"metadata":
  {"video_id", "num_frames", ...}, "point_tracking": [{"id", "label", "parent_objects",
  "frame_ids", "points"}, ...], ...}}`` and ``<video_id>.mp4`` files, decoded with PyAV.
* **npz** (:func:`load_npz_tracks`, :func:`save_npz_tracks`): one ``.npz`` with keys
  ``NAME/video``, ``NAME/points``, ``NAME/occluded``; it holds plain arrays only.

Why ``allow_pickle``: unpickling runs whatever code the file asks for, so a pickle from an untrusted
source can take over the process.  The TAP-Vid files are pickles, so the pickle readers refuse to
load them unless ``allow_pickle=True`` (CLI flag ``--allow-pickle``); only pass it for files you
trust.  Convert once with :func:`save_npz_tracks` and use the ``.npz`` afterwards: it loads
without pickle.
"""

from __future__ import annotations

import io
import json
import logging
import os
import pickle
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import av
import numpy as np
from av.video.reformatter import Interpolation
from PIL import Image

from trecvit.validation import int_at_least, size_hw

__all__ = [
    "TRACKING_FORMATS",
    "iter_records",
    "load_davis",
    "load_kinetics",
    "load_npz_tracks",
    "load_perception_test",
    "load_rgb_stacking",
    "load_tracking_data",
    "save_npz_tracks",
    "validate_record",
]

logger = logging.getLogger(__name__)

Record = dict[str, Any]
PathLike = str | os.PathLike
TRACKING_FORMATS: tuple[str, ...] = ("davis", "kinetics", "rgb_stacking", "perception_test", "npz")
"""Formats accepted by :func:`load_tracking_data` (besides ``"auto"``)."""
_NPZ_FIELDS = ("video", "points", "occluded")


def _fail(source: object, name: object, problem: str) -> ValueError:
    return ValueError(f"{source}: record {name!r}: {problem}")


def _decode_jpegs(frames: Iterable[Any], source: object, name: str, frame_size: tuple[int, int] | None):
    out = []
    for t, data in enumerate(frames):
        try:
            with Image.open(io.BytesIO(bytes(data))) as img:
                img = img.convert("RGB")
                if frame_size is not None and img.size != (frame_size[1], frame_size[0]):
                    img = img.resize((frame_size[1], frame_size[0]), Image.Resampling.BILINEAR)
                out.append(np.asarray(img, dtype=np.uint8))
        except Exception as e:  # noqa: BLE001 - Pillow raises many types for bad data
            problem = f"frame {t} is not a decodable image ({type(e).__name__}: {e})"
            raise _fail(source, name, problem) from None
    if not out:
        raise _fail(source, name, "video has no frames")
    if len({f.shape for f in out}) > 1:
        raise _fail(source, name, f"frames differ in size: {sorted({f.shape for f in out})}")
    return np.stack(out)


def _as_video(video: Any, source: object, name: str, frame_size: tuple[int, int] | None) -> np.ndarray:
    if isinstance(video, np.ndarray) and video.dtype.kind not in "SO":
        return video
    frames = list(video) if isinstance(video, (list, tuple, np.ndarray)) else None
    if frames and all(isinstance(f, (bytes, bytearray, memoryview)) for f in frames):
        return _decode_jpegs(frames, source, name, frame_size)  # TAP-Vid Kinetics: JPEG bytes
    try:
        return np.stack([np.asarray(f) for f in frames]) if frames else np.asarray(video)
    except (ValueError, TypeError) as e:
        raise _fail(source, name, f"video is not an array of frames ({e})") from None


def validate_record(
    record: Mapping[str, Any], *, source: object = "<memory>", name: object = None,
    frame_size: int | tuple[int, int] | None = None,
) -> Record:
    """Check ``record`` and return it as a canonical record (new dict; arrays not copied if valid).

    Args:
        record: a mapping with ``video`` (``uint8 [T, H, W, 3]``, or a sequence of JPEG-encoded
            frames, decoded here), ``points`` (real ``[n, T, 2]``, cast to float32) and
            ``occluded`` (``bool`` or 0/1 ``[n, T]``); ``name`` is kept if present.
        source: the file it came from, for messages.
        name: the record's name (defaults to ``record["name"]``).
        frame_size: ``(H, W)`` to resize JPEG-encoded frames to while decoding (arrays are kept).

    Raises:
        ValueError: naming ``source``, the record and the problem.
    """
    name = record.get("name") if name is None and isinstance(record, Mapping) else name
    if not isinstance(record, Mapping):
        raise _fail(source, name, f"expected a dict with video/points/occluded, got {type(record).__name__}")
    missing = [k for k in _NPZ_FIELDS if k not in record]
    if missing:
        raise _fail(source, name, f"missing key(s) {missing}; has {sorted(map(str, record))}")
    fs = None if frame_size is None else size_hw(frame_size, "frame_size")
    video = _as_video(record["video"], source, name, fs)
    if video.dtype != np.uint8 or video.ndim != 4 or video.shape[-1] != 3 or min(video.shape) < 1:
        raise _fail(source, name, f"video must be uint8 [T, H, W, 3] with T, H, W >= 1, "
                                  f"got {video.dtype} {tuple(video.shape)}")
    points, occluded = np.asarray(record["points"]), np.asarray(record["occluded"])
    if points.dtype.kind not in "fiu" or points.ndim != 3 or points.shape[2] != 2:
        raise _fail(source, name, f"points must be real [n, T, 2], got {points.dtype} {tuple(points.shape)}")
    if occluded.shape != points.shape[:2]:
        raise _fail(source, name, f"occluded has shape {tuple(occluded.shape)}, expected [n, T] = "
                                  f"{tuple(points.shape[:2])} from points")
    if points.shape[1] != video.shape[0]:
        raise _fail(source, name, f"points have T={points.shape[1]} frames but the video has "
                                  f"{video.shape[0]}")
    if occluded.dtype != np.bool_:
        if occluded.dtype.kind not in "fiu" or not np.isin(occluded, (0, 1)).all():
            raise _fail(source, name, f"occluded must be bool (or 0/1), got {occluded.dtype}")
        occluded = occluded.astype(np.bool_)
    points = points.astype(np.float32, copy=False)
    bad = ~np.isfinite(points).all(axis=-1)
    if (bad & ~occluded).any():
        n, t = np.argwhere(bad & ~occluded)[0]
        raise _fail(source, name, f"points are not finite at a visible position (point {n}, frame {t})")
    if bad.any():
        points = np.where(bad[..., None], np.float32(0), points)
    out: Record = {"video": video, "points": points, "occluded": occluded}
    if name is not None:
        out["name"] = str(name)
    return out


def _existing(path: PathLike, what: str = "file") -> Path:
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{what} not found: {p}")
    return p


def _unpickle(path: PathLike, allow_pickle: bool) -> Any:
    p = _existing(path)
    if not allow_pickle:
        raise ValueError(
            f"{p} is a pickle, and loading a pickle can execute arbitrary code. Only load files you "
            "trust: pass allow_pickle=True (CLI flag --allow-pickle), or convert the file once with "
            "trecvit.tracking.formats.save_npz_tracks and load the .npz, which needs no pickle."
        )
    try:
        with open(p, "rb") as f:
            return pickle.load(f)
    except MemoryError:
        raise
    except Exception as e:  # noqa: BLE001 - unpickling garbage raises nearly anything
        raise ValueError(f"{p}: cannot unpickle ({type(e).__name__}: {e}); the file is corrupt "
                         "or not a pickle") from None


def iter_records(obj: Any, source: object, prefix: str, frame_size=None) -> Iterator[tuple[str, Record]]:
    """Validated ``(name, record)`` pairs from an unpickled TAP-Vid object: a dict ``{name: record}``
    or a list of records (named by ``video_id``/``name`` if present, else ``f"{prefix}_{index:04d}"``)."""
    if isinstance(obj, Mapping):
        items = [(str(k), v) for k, v in obj.items()]
    elif isinstance(obj, (list, tuple)):
        items = []
        for i, rec in enumerate(obj):
            label = rec.get("video_id", rec.get("name")) if isinstance(rec, Mapping) else None
            items.append((label if isinstance(label, str) and label else f"{prefix}_{i:04d}", rec))
    else:
        raise ValueError(f"{source}: expected a dict or a list of track records, got {type(obj).__name__}")
    for name, rec in items:
        yield name, validate_record(rec, source=source, name=name, frame_size=frame_size)


def _collect(pairs: Iterable[tuple[str, Record]], source: object) -> dict[str, Record]:
    out: dict[str, Record] = {}
    for name, rec in pairs:
        if name in out:
            raise ValueError(f"{source}: duplicate record name {name!r}")
        out[name] = rec
    return out


def load_npz_tracks(path: PathLike) -> dict[str, Record]:
    """Read the ``.npz`` written by :func:`save_npz_tracks` (no pickle involved)."""
    p = _existing(path)
    try:
        with np.load(p, allow_pickle=False) as z:
            if not isinstance(z, np.lib.npyio.NpzFile):
                raise ValueError("not an .npz archive")
            arrays = {k: z[k] for k in z.files}
    except (ValueError, OSError, EOFError) as e:
        raise ValueError(f"{p}: cannot read as an .npz of tracks ({type(e).__name__}: {e})") from None
    except Exception as e:  # noqa: BLE001 - zipfile errors on corrupt archives
        raise ValueError(f"{p}: corrupt .npz ({type(e).__name__}: {e})") from None
    groups: dict[str, dict[str, np.ndarray]] = {}
    for key, value in arrays.items():
        name, sep, field = key.rpartition("/")
        if not sep or field not in _NPZ_FIELDS:
            raise ValueError(f"{p}: unexpected key {key!r} (expected NAME/video, NAME/points, NAME/occluded)")
        groups.setdefault(name, {})[field] = value
    return {name: validate_record(g, source=p, name=name) for name, g in groups.items()}


def save_npz_tracks(
    records: Mapping[str, Mapping[str, Any]] | Iterable[Mapping[str, Any]], path: PathLike, *,
    overwrite: bool = False, compress: bool = False,
) -> Path:
    """Write records (``{name: record}`` or records with ``"name"``) to one ``.npz``, atomically.

    The file is written next to ``path`` under a temporary name and moved into place with
    ``os.replace``, so a crash never leaves a half-written file at ``path``.

    Raises:
        FileExistsError: if ``path`` exists and ``overwrite`` is false.
        ValueError: for an invalid record, a missing/duplicate name.
    """
    p = Path(path)
    if p.exists() and not overwrite:
        raise FileExistsError(f"{p} exists; pass overwrite=True to replace it")
    pairs = records.items() if isinstance(records, Mapping) else ((r.get("name"), r) for r in records)
    arrays: dict[str, np.ndarray] = {}
    for name, rec in pairs:
        if not isinstance(name, str) or not name:
            raise ValueError(f"{p}: every record needs a non-empty str name, got {name!r}")
        if f"{name}/video" in arrays:
            raise ValueError(f"{p}: duplicate record name {name!r}")
        rec = validate_record(rec, name=name)
        for field in _NPZ_FIELDS:
            arrays[f"{name}/{field}"] = rec[field]
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            (np.savez_compressed if compress else np.savez)(f, **arrays)
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return p


def load_davis(path: PathLike, *, allow_pickle: bool = False) -> dict[str, Record]:
    """TAP-Vid DAVIS: a pickled ``{name: record}`` (needs ``allow_pickle``) or the same as ``.npz``."""
    if Path(path).suffix.lower() == ".npz":
        return load_npz_tracks(path)
    obj = _unpickle(path, allow_pickle)
    if not isinstance(obj, Mapping):
        raise ValueError(f"{path}: a TAP-Vid DAVIS pickle holds a dict {{name: record}}, got "
                         f"{type(obj).__name__} (a list is the RGB-Stacking layout: use load_rgb_stacking)")
    return _collect(iter_records(obj, path, Path(path).stem), path)


def load_rgb_stacking(path: PathLike, *, allow_pickle: bool = False) -> dict[str, Record]:
    """TAP-Vid RGB-Stacking: a pickled list of records, named ``<file stem>_<index:04d>``."""
    obj = _unpickle(path, allow_pickle)
    if not isinstance(obj, (list, tuple)):
        raise ValueError(f"{path}: a TAP-Vid RGB-Stacking pickle holds a list of records, got "
                         f"{type(obj).__name__} (a dict is the DAVIS layout: use load_davis)")
    return _collect(iter_records(obj, path, Path(path).stem), path)


def load_kinetics(
    path_or_folder: PathLike, *, allow_pickle: bool = False, frame_size: int | tuple[int, int] | None = None,
) -> Iterator[tuple[str, Record]]:
    """TAP-Vid Kinetics: ``(name, record)`` pairs from one shard or every ``*.pkl`` of a folder (sorted).

    The path, the shard list and ``allow_pickle`` are checked at once; shards are read lazily, one at a
    time (decoded Kinetics is large).  ``frame_size`` ``(H, W)`` resizes frames while decoding.
    Duplicate names across shards raise ``ValueError``.
    """
    p = _existing(path_or_folder, "Kinetics shard or folder")
    shards = sorted(p.glob("*.pkl")) if p.is_dir() else [p]
    if not shards:
        raise FileNotFoundError(f"no *.pkl shards in {p}")
    if not allow_pickle:
        _unpickle(shards[0], False)  # raises the allow_pickle error

    def generate() -> Iterator[tuple[str, Record]]:
        seen: set[str] = set()
        for shard in shards:
            for name, rec in iter_records(_unpickle(shard, True), shard, shard.stem, frame_size):
                if name in seen:
                    raise ValueError(f"{shard}: duplicate record name {name!r}")
                seen.add(name)
                yield name, rec

    return generate()


def _read_mp4(path: Path, frame_size: tuple[int, int] | None, max_frames: int | None) -> np.ndarray:
    frames = []
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            for frame in container.decode(stream):
                if max_frames is not None and len(frames) >= max_frames:
                    break
                if frame_size is None:
                    frames.append(frame.to_ndarray(format="rgb24"))
                else:
                    h, w = frame_size
                    shrink = h * w < frame.height * frame.width
                    interp = Interpolation.AREA if shrink else Interpolation.BILINEAR
                    frames.append(frame.reformat(width=w, height=h, format="rgb24",
                                                 interpolation=interp).to_ndarray())
    except (av.FFmpegError, OSError, IndexError, ValueError) as e:
        raise ValueError(f"{path}: cannot decode video ({type(e).__name__}: {e})") from None
    if not frames:
        raise ValueError(f"{path}: no decodable video frames")
    return np.stack(frames)


def _perception_test_record(entry: Mapping[str, Any], video: np.ndarray, source: object, name: str) -> Record:
    """Dense canonical tracks from sparse Perception Test ``point_tracking`` entries.

    A track's ``frame_ids`` [K] lists the frames where it is annotated (= visible); every other frame
    is occluded.  ``points`` hold normalised ``(y, x)``; the released files store them as ``[2, K]``
    (row 0 = y, row 1 = x, as the official notebooks read them); ``[K, 2]`` (the README's wording) is
    accepted too, and ``[2, 2]`` is read as ``[2, K]``.  Occluded frames get positions interpolated
    linearly between annotated ones (held constant beyond the ends), so values stay finite.
    """
    T = video.shape[0]
    declared = (entry.get("metadata") or {}).get("num_frames")
    tracks = entry.get("point_tracking") or []
    points = np.zeros((len(tracks), T, 2), np.float32)
    occluded = np.ones((len(tracks), T), np.bool_)
    for i, track in enumerate(tracks):
        where = f"point_tracking[{i}]" + (f" (id {track.get('id')!r})" if isinstance(track, Mapping) else "")
        try:
            ids = np.asarray(track["frame_ids"], dtype=np.int64).reshape(-1)
            yx = np.asarray(track["points"], dtype=np.float64)
        except (KeyError, TypeError, ValueError) as e:
            raise _fail(source, name, f"{where}: needs numeric frame_ids and points ({e!r})") from None
        K = ids.size
        if yx.shape == (2, K):
            ys, xs = yx[0], yx[1]
        elif yx.shape == (K, 2):
            ys, xs = yx[:, 0], yx[:, 1]
        else:
            raise _fail(source, name, f"{where}: points have shape {yx.shape}, expected [2, {K}] or [{K}, 2]")
        limit = declared if isinstance(declared, int) else T
        if K == 0 or ids.min() < 0 or ids.max() >= limit or np.unique(ids).size != K:
            raise _fail(source, name, f"{where}: frame_ids must be distinct, in [0, {limit}), and non-empty")
        if not (np.isfinite(ys).all() and np.isfinite(xs).all()):
            raise _fail(source, name, f"{where}: points are not finite")
        order = np.argsort(ids)
        ids, ys, xs = ids[order], ys[order], xs[order]
        keep = ids < T  # the video may have been cut short (max_frames, or fewer decodable frames)
        if not keep.any():
            occluded[i] = True
            continue
        t = np.arange(T)
        points[i, :, 0] = np.interp(t, ids[keep], xs[keep])
        points[i, :, 1] = np.interp(t, ids[keep], ys[keep])
        occluded[i, ids[keep]] = False
    return validate_record({"video": video, "points": points, "occluded": occluded}, source=source, name=name)


def load_perception_test(
    annotations: PathLike, videos: PathLike, *, split: str | None = None,
    frame_size: int | tuple[int, int] | None = None, max_frames: int | None = None,
    skip_missing: bool = False, video_ext: str = ".mp4",
) -> Iterator[tuple[str, Record]]:
    """Perception Test point tracks: ``(video_id, record)`` pairs, decoding videos lazily.

    Reads from each annotation entry: ``metadata.video_id`` (else the JSON key), ``metadata.split``
    (only with ``split``), ``metadata.num_frames`` (bounds ``frame_ids``), and per track in
    ``point_tracking``: ``frame_ids`` and ``points`` (see :func:`_perception_test_record`); tracks keep
    their order in the file.  Entries without point tracks are skipped.

    Args:
        annotations: a JSON file ``{video_id: entry}`` (a single entry with ``metadata`` also works),
            or a folder of such ``*.json`` files.
        videos: the folder holding ``<video_id><video_ext>``.
        split: keep only entries whose ``metadata.split`` equals this (e.g. ``"valid"``).
        frame_size: ``(H, W)`` (or an int, square) to scale frames to while decoding; Perception Test
            videos are long and large, so this bounds memory.
        max_frames: decode at most this many leading frames (tracks are cut to match).
        skip_missing: skip entries whose video file is absent instead of raising.

    Raises:
        FileNotFoundError: a missing annotation file, video folder or (unless ``skip_missing``) video.
        ValueError: unreadable JSON, malformed tracks, undecodable videos (naming the file).
    """
    ann = _existing(annotations, "annotation file or folder")
    vid_dir = _existing(videos, "video folder")
    fs = None if frame_size is None else size_hw(frame_size, "frame_size")
    limit = None if max_frames is None else int_at_least(max_frames, "max_frames")
    files = sorted(ann.glob("*.json")) if ann.is_dir() else [ann]
    entries: list[tuple[Path, str, Mapping[str, Any]]] = []
    for f in files:
        try:
            data = json.loads(f.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as e:
            raise ValueError(f"{f}: not valid JSON ({e})") from None
        if isinstance(data, Mapping) and "metadata" in data:
            data = {str(data["metadata"].get("video_id", f.stem)): data}
        if not isinstance(data, Mapping):
            raise ValueError(f"{f}: expected a JSON object {{video_id: entry}}, got {type(data).__name__}")
        for key, entry in data.items():
            if not isinstance(entry, Mapping):
                raise ValueError(f"{f}: entry {key!r} is not an object")
            meta = entry.get("metadata") or {}
            if not entry.get("point_tracking") or (split is not None and meta.get("split") != split):
                continue
            entries.append((f, str(meta.get("video_id", key)), entry))
    missing = [n for _, n, _ in entries if not (vid_dir / f"{n}{video_ext}").is_file()]
    if missing and not skip_missing:
        raise FileNotFoundError(f"{len(missing)} video(s) missing from {vid_dir}, e.g. "
                                f"{[n + video_ext for n in missing[:3]]} (pass skip_missing=True to skip)")

    def generate() -> Iterator[tuple[str, Record]]:
        for f, name, entry in entries:
            path = vid_dir / f"{name}{video_ext}"
            if not path.is_file():
                continue
            video = _read_mp4(path, fs, limit)
            declared = (entry.get("metadata") or {}).get("num_frames")
            if isinstance(declared, int) and video.shape[0] < min(declared, limit or declared):
                logger.warning("%s: decoded %d frames, annotations say %d", path, video.shape[0], declared)
            yield name, _perception_test_record(entry, video, f, name)

    return generate()


def load_tracking_data(
    path: PathLike, *, format: str = "auto", allow_pickle: bool = False, videos: PathLike | None = None,
    frame_size: int | tuple[int, int] | None = None, **kwargs: Any,
) -> dict[str, Record]:
    """Read a tracking data set into ``{name: record}``.

    ``format``: one of :data:`TRACKING_FORMATS` or ``"auto"``: ``.npz`` -> npz, ``.json`` ->
    perception_test (needs ``videos``), a folder of ``*.pkl`` -> kinetics, any other file is treated
    as a pickle (after the ``allow_pickle`` check): a dict -> davis, a list -> rgb_stacking (JPEG
    frames, as in Kinetics shards, are decoded either way).  ``frame_size`` applies to decoded
    formats (kinetics, perception_test); ``kwargs`` go to :func:`load_perception_test`.
    """
    p = _existing(path, "tracking data")
    if format == "auto":
        if p.is_dir():
            if not any(p.glob("*.pkl")):
                raise ValueError(f"{p}: a folder without *.pkl shards has no known format; pass format=")
            format = "kinetics"
        elif p.suffix.lower() in (".npz", ".json"):
            format = "npz" if p.suffix.lower() == ".npz" else "perception_test"
        else:
            obj = _unpickle(p, allow_pickle)
            fs = None if frame_size is None else size_hw(frame_size, "frame_size")
            return _collect(iter_records(obj, p, p.stem, fs), p)
    if format == "davis":
        return load_davis(p, allow_pickle=allow_pickle)
    if format == "rgb_stacking":
        return load_rgb_stacking(p, allow_pickle=allow_pickle)
    if format == "npz":
        return load_npz_tracks(p)
    if format == "kinetics":
        return _collect(load_kinetics(p, allow_pickle=allow_pickle, frame_size=frame_size), p)
    if format == "perception_test":
        if videos is None:
            raise ValueError("format 'perception_test' needs videos= (the folder of <video_id>.mp4 files)")
        return _collect(load_perception_test(p, videos, frame_size=frame_size, **kwargs), p)
    raise ValueError(f"unknown tracking data format {format!r}; expected 'auto' or one of {TRACKING_FORMATS}")

