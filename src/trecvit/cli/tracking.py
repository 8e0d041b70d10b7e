"""``trecvit train-tracker``, ``eval-tracker``, ``track`` and ``synthetic-tracks``: point tracking."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from trecvit.cli.common import check_output, device_type
from trecvit.cli.train import add_run_options, run_config

PICKLE_HELP = ("allow reading a pickle file (TAP-Vid's DAVIS, Kinetics and RGB-Stacking files are pickles, "
               "and a pickle can run code when it is loaded: pass this only for files you trust; .npz tracks "
               "need no pickle)")


def cmd_train_tracker(args: argparse.Namespace) -> int:
    from trecvit.tracking.train import TrackerTrainConfig, TrackerTrainer, mean_text

    cfg, result = run_config(args, TrackerTrainConfig, TrackerTrainer)
    if result is None:
        return 1
    ev = result.final_eval
    if ev is not None:
        print(f"done: {result.steps} steps in {result.seconds / 60:.1f} min; held-out TAP-Vid "
              f"({ev.query_mode}): {mean_text(ev)} on {ev.mean['num_videos']} videos")
    print(f"tracker: {result.model_dir}  (trecvit eval-tracker --checkpoint {result.model_dir} --data "
          f"TRACKS; trecvit track VIDEO --checkpoint {result.model_dir} --grid 8 --out tracks.mp4)")
    return 0


def cmd_eval_tracker(args: argparse.Namespace) -> int:
    from trecvit.tracking.data import load_tracking_data
    from trecvit.tracking.evaluate import evaluate_tracker
    from trecvit.tracking.model import PointTracker
    from trecvit.tracking.train import mean_text

    if args.baseline is None and args.checkpoint is None:
        raise ValueError("give --checkpoint (a trecvit train-tracker run's model/ folder) or --baseline "
                         "static")
    records = load_tracking_data(args.data, format=args.format, allow_pickle=args.allow_pickle,
                                 videos=args.videos)
    if args.max_videos:
        records = dict(list(records.items())[:args.max_videos])
    model = None
    if args.baseline is None:
        model = PointTracker.from_pretrained(args.checkpoint, map_location=args.device).eval()
    result = evaluate_tracker(model, records, query_mode=args.query_mode, num_frames=args.frames,
                              progress=not args.json)
    what = "static-point baseline" if model is None else str(args.checkpoint)
    if args.json:
        print(json.dumps({"model": what, **result.to_dict()}, indent=2))
        return 0
    print(f"TAP-Vid metrics of {what} on {args.data} ({len(result.names)} videos, {result.num_queries} "
          f"query points, '{args.query_mode}' mode; percentages)")
    print(result.table())
    undefined = result.mean.get("num_videos_undefined", 0)
    if undefined:
        print(f"({undefined} video(s) with no scored visible point left out of the means of the metrics "
              "undefined for them)")
    if result.skipped:
        print(f"({len(result.skipped)} video(s) without any visible point skipped: "
              f"{', '.join(result.skipped[:5])})")
    print(f"mean: {mean_text(result)}" + (f"; {result.frames_per_second:.1f} frames/s" if model else ""))
    return 0


def cmd_track(args: argparse.Namespace) -> int:
    from trecvit.io import video_info
    from trecvit.tracking.model import PointTracker
    from trecvit.tracking.online import grid_points, parse_points, track_video

    if (args.points is None) == (args.grid is None):
        raise ValueError("give the points to track with either --points 'x,y;x,y' or --grid N")
    outputs = [(args.out, "--out"), (args.strip, "--strip"), (args.tracks, "--tracks")]
    for path, flag in outputs:
        check_output(path, flag, args.overwrite)
    if args.tracks is not None and not args.tracks.endswith((".npz", ".json")):
        raise ValueError(f"--tracks is written as .npz or .json, got {args.tracks}")
    model = PointTracker.from_pretrained(args.checkpoint, map_location=args.device).eval()
    if args.points is not None:
        points = parse_points(args.points)
    else:
        info = video_info(args.video)
        points = grid_points(info.width, info.height, args.grid)
    result = track_video(model, args.video, points, query_frame=args.query_frame, max_frames=args.max_frames,
                         out_video=args.out, strip=args.strip)
    if args.tracks:
        result.save(args.tracks)
    if args.json:
        print(json.dumps(result.to_dict()))
    else:
        last = result.num_frames - 1
        for k in range(len(points)):
            x, y = result.tracks[k, last]
            state = "visible" if result.visible[k, last] else "occluded"
            print(f"point {k}: ({points[k][0]:.1f}, {points[k][1]:.1f}) at frame {args.query_frame} -> "
                  f"({x:.1f}, {y:.1f}) at frame {last}, {state}")
        written = [path for path, _ in outputs if path]
        print(f"{result.num_frames} frames, {len(points)} points: {result.step_fps:.1f} frames/s in the "
              f"tracker's step, {result.wall_fps:.1f} frames/s with decoding and drawing"
              + (f"; wrote {', '.join(written)}" if written else ""))
    return 0


def cmd_synthetic_tracks(args: argparse.Namespace) -> int:
    from trecvit.tracking.data import save_npz_tracks
    from trecvit.tracking.synthetic import SyntheticTracks, write_davis_pickle

    if not args.out.endswith((".pkl", ".npz")):
        raise ValueError(f"--out is written as .pkl (the TAP-Vid DAVIS format) or .npz, got {args.out}")
    check_output(args.out, "out", args.overwrite)
    if not args.fps > 0:
        raise ValueError(f"--fps must be > 0, got {args.fps}")
    source = SyntheticTracks(args.num_videos, num_frames=args.frames, image_size=args.image_size,
                             num_points=args.points, seed=args.seed)
    if args.mp4 is not None:
        folder = Path(args.mp4)
        if folder.exists() and (not folder.is_dir() or (any(folder.iterdir()) and not args.overwrite)):
            raise ValueError(f"--mp4 {folder} exists and is not an empty folder; pass --overwrite to write "
                             "into it")
    records = source.records()
    if args.out.endswith(".pkl"):
        write_davis_pickle(records, args.out, overwrite=args.overwrite)
    else:
        save_npz_tracks(records, args.out, overwrite=args.overwrite)
    print(f"wrote {args.out}: {len(records)} synthetic videos of {args.frames} frames at {args.image_size}x"
          f"{args.image_size}, {args.points} tracked points each (seed {args.seed})")
    if args.mp4 is not None:
        from trecvit.tracking.online import write_video

        folder.mkdir(parents=True, exist_ok=True)
        for name, record in records.items():
            write_video(folder / f"{name}.mp4", record["video"], fps=args.fps)
        print(f"wrote {len(records)} videos to {folder}/ (for trecvit track)")
    return 0


def add_parsers(sub) -> None:
    """Add the point-tracking commands to the ``trecvit`` sub-parsers."""
    from trecvit.tracking.train import TrackerTrainConfig
    from trecvit.training.config import add_config_arguments

    p = sub.add_parser(
        "train-tracker", help="train a point-tracking readout on a (frozen) TRecViT encoder",
        description="Train MooG's recurrent point-tracking readout on the tokens of a TRecViT encoder "
                    "(frozen by default; --finetune trains it too), on built-in synthetic videos of moving "
                    "textured objects with exact tracks, or on a TAP-Vid-format file. Held-out videos are "
                    "scored with the TAP-Vid metrics. Options come from the defaults, then --config "
                    "FILE.yaml, then the command line, as for trecvit train; run under torchrun for DDP. The "
                    "run folder ends with model/ (for trecvit eval-tracker and trecvit track).")
    add_run_options(p, "train-tracker")
    add_config_arguments(p, TrackerTrainConfig)
    p.set_defaults(func=cmd_train_tracker)

    p = sub.add_parser(
        "eval-tracker", help="the TAP-Vid metrics of a tracker (or of the static baseline) on a TAP-Vid file",
        description="Score a point tracker on TAP-Vid-format tracks with the benchmark's metrics (average "
                    "Jaccard, <δ avg, occlusion accuracy, Jaccard at 1-16 pixels in a 256x256 frame), per "
                    "video and on average. The tracker runs causally over each whole video.")
    p.add_argument("--checkpoint", default=None, metavar="DIR",
                   help="the model/ folder of a trecvit train-tracker run (not needed with --baseline)")
    p.add_argument("--data", required=True, metavar="FILE",
                   help="the tracks: a TAP-Vid DAVIS/RGB-Stacking pickle, a folder of TAP-Vid Kinetics "
                        "shards, Perception Test's point-track JSON (with --videos), or an .npz of tracks "
                        "(trecvit synthetic-tracks writes both .pkl and .npz)")
    p.add_argument("--format", default="auto",
                   choices=("auto", "davis", "kinetics", "rgb_stacking", "perception_test", "npz"),
                   help="the file's format (default auto: from its suffix and content)")
    p.add_argument("--videos", default=None, metavar="DIR",
                   help="for Perception Test (--data its point-track annotation JSON): the folder of its "
                        "<video_id>.mp4 files (default: none; required for that format)")
    p.add_argument("--allow-pickle", action="store_true", help=PICKLE_HELP)
    p.add_argument("--query-mode", default="first", choices=("first", "strided"),
                   help="first: each point queried at its first visible frame, later frames scored; strided: "
                        "queried every 5th frame where visible, all other frames scored (default first)")
    p.add_argument("--baseline", default=None, choices=("static",),
                   help="score a baseline instead of a tracker: static (every point stays where it was "
                        "queried, always visible)")
    p.add_argument("--frames", type=int, default=None,
                   help="score the first N frames of each video only (default: all)")
    p.add_argument("--max-videos", type=int, default=None, help="score the first N videos only (default all)")
    p.add_argument("--json", action="store_true", help="print the per-video and mean metrics as JSON")
    p.add_argument("--device", type=device_type, default="cpu", help="the torch device (default cpu)")
    p.set_defaults(func=cmd_eval_tracker)

    p = sub.add_parser(
        "track", help="track points through a video online, frame by frame, and draw the tracks",
        description="Track query points through a video with a trained tracker, one frame at a time "
                    "(constant memory), and write the video with the tracks drawn (a filled disc: visible; a "
                    "ring: occluded), a PNG strip of a few frames and the tracks as .npz or JSON; prints the "
                    "frames per second.")
    p.add_argument("video", metavar="VIDEO", help="the video file")
    p.add_argument("--checkpoint", required=True, metavar="DIR",
                   help="the model/ folder of a trecvit train-tracker run (required)")
    p.add_argument("--points", default=None, metavar="X,Y;X,Y",
                   help="the query points in the video's pixels, x to the right and y down from the top-left "
                        "corner, separated by ';'")
    p.add_argument("--grid", type=int, default=None, metavar="N",
                   help="instead of --points, an N x N grid of points over the frame")
    p.add_argument("--query-frame", type=int, default=0, metavar="T",
                   help="the frame the points are given at; the tracks start there (default 0)")
    p.add_argument("--max-frames", type=int, default=None, help="track the first N frames only (default all)")
    p.add_argument("--out", default=None, metavar="MP4", help="write the video with the tracks drawn")
    p.add_argument("--strip", default=None, metavar="PNG", help="write a PNG of 5 drawn frames")
    p.add_argument("--tracks", default=None, metavar="FILE",
                   help="write the tracks (video pixels) and visibility as .npz or .json")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.add_argument("--json", action="store_true", help="print the tracks as one JSON object")
    p.add_argument("--device", type=device_type, default="cpu", help="the torch device (default cpu)")
    p.set_defaults(func=cmd_track)

    p = sub.add_parser(
        "synthetic-tracks", help="write synthetic point-tracking videos in the TAP-Vid DAVIS format",
        description="Write videos of the built-in synthetic tracking data (textured objects moving, rotating "
                    "and scaling over a moving background, with exact tracks and occlusion flags) as a "
                    "TAP-Vid DAVIS pickle (.pkl) or an .npz, e.g. a held-out set for trecvit eval-tracker.")
    p.add_argument("out", metavar="FILE", help="the output file, .pkl or .npz")
    p.add_argument("--num-videos", type=int, default=30, help="videos to write (default 30)")
    p.add_argument("--frames", type=int, default=24, help="frames per video (default 24)")
    p.add_argument("--image-size", type=int, default=64, help="side of the square frames (default 64)")
    p.add_argument("--points", type=int, default=64, help="tracked points per video (default 64)")
    p.add_argument("--seed", type=int, default=1000,
                   help="seeds the videos (default 1000; training uses seed 0 and up)")
    p.add_argument("--mp4", default=None, metavar="DIR",
                   help="also write every video as DIR/NAME.mp4, e.g. for trecvit track (default: none)")
    p.add_argument("--fps", type=float, default=8.0, help="frame rate of the --mp4 videos (default 8)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing file")
    p.set_defaults(func=cmd_synthetic_tracks)
