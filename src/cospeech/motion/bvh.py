"""BVH: writing a skeleton's hierarchy plus per-frame Euler channels, and reading any BVH file.

Rotation channels are intrinsic Euler angles in the declared order ("Zrotation Xrotation
Yrotation" means R = Rz · Rx · Ry), which is how Blender, MotionBuilder and most readers
interpret them. Angles are unwrapped over time so no channel jumps by 360°.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from ..errors import CospeechError
from .skeleton import Skeleton


def euler_channels(axis_angle: np.ndarray, order: str = "ZXY") -> np.ndarray:
    """(T, J, 3) axis-angle -> (T, J, 3) degrees, in `order` (intrinsic), unwrapped over T."""
    t, j, _ = axis_angle.shape
    eul = Rotation.from_rotvec(axis_angle.reshape(-1, 3).astype(np.float64)).as_euler(order.upper())
    eul = np.unwrap(eul.reshape(t, j, 3), axis=0)
    return np.degrees(eul)


def bvh_text(
    skeleton: Skeleton, axis_angle: np.ndarray, root_pos: np.ndarray, fps: float,
    scale: float = 100.0, order: str = "ZXY",
) -> str:
    """The whole BVH file as text.

    axis_angle: (T, J, 3) local rotations; root_pos: (T, 3) world root position in metres;
    positions and offsets are multiplied by `scale` (100: centimetres).
    """
    t, j, _ = axis_angle.shape
    assert j == skeleton.n_joints and root_pos.shape == (t, 3)
    order = order.upper()
    rot_channels = " ".join(f"{a}rotation" for a in order)
    children = [skeleton.children(k) for k in range(j)]
    out = io.StringIO()
    out.write("HIERARCHY\n")

    def joint(k: int, depth: int) -> None:
        pad = "\t" * depth
        off = (0.0, 0.0, 0.0) if skeleton.parents[k] < 0 else skeleton.offsets[k] * scale
        head = "ROOT" if skeleton.parents[k] < 0 else "JOINT"
        out.write(f"{pad}{head} {skeleton.names[k]}\n{pad}{{\n")
        out.write(f"{pad}\tOFFSET {off[0]:.6f} {off[1]:.6f} {off[2]:.6f}\n")
        if skeleton.parents[k] < 0:
            out.write(f"{pad}\tCHANNELS 6 Xposition Yposition Zposition {rot_channels}\n")
        else:
            out.write(f"{pad}\tCHANNELS 3 {rot_channels}\n")
        for c in children[k]:
            joint(c, depth + 1)
        if not children[k]:
            tip = skeleton.offsets[k] * scale * 0.6
            out.write(f"{pad}\tEnd Site\n{pad}\t{{\n{pad}\t\tOFFSET {tip[0]:.6f} {tip[1]:.6f} {tip[2]:.6f}\n{pad}\t}}\n")
        out.write(f"{pad}}}\n")

    joint(0, 0)
    # channel columns follow the hierarchy's depth-first order
    dfs: list[int] = []

    def walk(k: int) -> None:
        dfs.append(k)
        for c in children[k]:
            walk(c)

    walk(0)
    eul = euler_channels(axis_angle, order)[:, dfs]  # (T, J, 3)
    rows = np.concatenate([root_pos * scale, eul.reshape(t, -1)], axis=1)
    out.write(f"MOTION\nFrames: {t}\nFrame Time: {1.0 / fps:.8f}\n")
    np.savetxt(out, rows, fmt="%.6f", delimiter=" ")
    return out.getvalue()



# -- reading -----------------------------------------------------------------------------------
_CHANNELS = ("Xposition", "Yposition", "Zposition", "Xrotation", "Yrotation", "Zrotation")


@dataclass(frozen=True, eq=False)
class BvhFile:
    """A BVH file as read: the hierarchy in file (depth-first) order and every frame's channels.

    Offsets and positions are in the file's unit (often centimetres). `fps` is the rate in use:
    the caller's when given, else the header's. `header_frames` / `header_fps` keep what the
    header said, which exporters and hand edits get wrong (see `header_mismatch`).
    """

    names: tuple[str, ...]
    parents: tuple[int, ...]  # -1 for a root; a parent always precedes its children
    offsets: np.ndarray  # (J, 3)
    channels: tuple[tuple[str, ...], ...]  # per joint, in column order, e.g. ("Zrotation", "Xrotation", "Yrotation")
    values: np.ndarray  # (T, C) float64, the rows of the MOTION section
    fps: float
    header_frames: int
    header_fps: float

    @property
    def n_frames(self) -> int:
        return len(self.values)

    @property
    def n_joints(self) -> int:
        return len(self.names)

    @property
    def header_mismatch(self) -> bool:
        """True when the header's frame count disagrees with the rows."""
        return self.header_frames != self.n_frames

    def columns(self, j: int) -> dict[str, np.ndarray]:
        """Channel name -> (T,) values of joint `j`."""
        start = sum(len(c) for c in self.channels[:j])
        return {name: self.values[:, start + k] for k, name in enumerate(self.channels[j])}

    def rotations(self) -> np.ndarray:
        """(T, J, 3, 3) local rotation matrices: each joint's rotation channels are intrinsic
        elementary rotations in the order they are declared ("Zrotation Xrotation Yrotation":
        R = Rz · Rx · Ry), whatever that order is, with 0 to 3 of them."""
        out = np.empty((self.n_frames, self.n_joints, 3, 3))
        for j in range(self.n_joints):
            r = Rotation.identity(self.n_frames)
            for name, vals in self.columns(j).items():
                if name.endswith("rotation"):
                    r = r * Rotation.from_euler(name[0], vals[:, None], degrees=True)
            out[:, j] = r.as_matrix()
        return out

    def axis_angle(self) -> np.ndarray:
        """(T, J, 3) local rotations as axis-angle."""
        m = self.rotations()
        return Rotation.from_matrix(m.reshape(-1, 3, 3)).as_rotvec().reshape(m.shape[:2] + (3,))

    def translations(self) -> np.ndarray:
        """(T, J, 3) each joint's translation from its parent: the OFFSET, with every position
        channel (on any joint) replacing its axis."""
        out = np.repeat(self.offsets[None].astype(np.float64), self.n_frames, axis=0)
        for j in range(self.n_joints):
            for name, vals in self.columns(j).items():
                if name.endswith("position"):
                    out[:, j, "XYZ".index(name[0])] = vals
        return out

    def world(self) -> tuple[np.ndarray, np.ndarray]:
        """Forward kinematics: (T, J, 3, 3) world rotations and (T, J, 3) world joint positions,
        in the file's unit."""
        rot, trans = self.rotations(), self.translations()
        world_r = np.empty_like(rot)
        pos = np.empty_like(trans)
        for j, p in enumerate(self.parents):
            if p < 0:
                world_r[:, j], pos[:, j] = rot[:, j], trans[:, j]
            else:
                world_r[:, j] = world_r[:, p] @ rot[:, j]
                pos[:, j] = pos[:, p] + np.einsum("tab,tb->ta", world_r[:, p], trans[:, j])
        return world_r, pos

    def positions(self) -> np.ndarray:
        """(T, J, 3) world joint positions by forward kinematics, in the file's unit."""
        return self.world()[1]

    def skeleton(self, scale: float = 0.01) -> Skeleton:
        """The hierarchy as a `Skeleton` (offsets × scale: 0.01 turns centimetres into metres)."""
        return Skeleton(self.names, self.parents, self.offsets * scale)


def read_bvh(path: str | Path, fps: float | None = None) -> BvhFile:
    """Read a BVH file: any rotation order, position channels on any joint, tabs or spaces.

    The rows are the truth: when the header's `Frames:` disagrees with them, a warning says so
    (and what the real rate likely is); `fps` states the real frame rate and overrides the
    header's `Frame Time:`. Every problem is a one-line `CospeechError` naming the file and line.
    """
    path = Path(path)
    if not path.is_file():
        raise CospeechError(f"{path}: no such BVH file" if not path.exists() else f"{path}: is a folder, not a BVH file")
    if fps is not None and not (np.isfinite(fps) and fps > 0):
        raise CospeechError(f"{path}: fps must be a positive number, got {fps!r}")
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as err:
        raise CospeechError(f"{path}: cannot read ({err.strerror or err})") from None
    motion_at = next((i for i, line in enumerate(lines) if line.strip().upper() == "MOTION"), None)
    if not lines or lines[0].strip().upper() != "HIERARCHY" or motion_at is None:
        raise CospeechError(f"{path}: not a BVH file (expected HIERARCHY ... MOTION sections)")
    names, parents, offsets, channels = _parse_hierarchy(path, lines[1:motion_at], first_line=2)
    header_frames, frame_time = _parse_motion_header(path, lines, motion_at)
    n_channels = sum(len(c) for c in channels)
    values = _parse_rows(path, lines, motion_at + 3, n_channels)
    header_fps = 1.0 / frame_time
    if abs(header_fps - round(header_fps)) < 1e-4 * header_fps:
        header_fps = float(round(header_fps))  # "Frame Time: 0.0333333" means 30 fps
    if len(values) == 0:
        raise CospeechError(f"{path}: no frames after the MOTION header")
    if header_frames != len(values) and fps is None:
        duration = header_frames * frame_time
        warnings.warn(
            f"{path}: header says {header_frames} frames at {header_fps:.4g} fps ({duration:.1f} s) but the file "
            f"holds {len(values)} rows; using the rows. If frames were dropped, the real rate is about "
            f"{len(values) / duration:.3g} fps: state the rate with fps= (--fps on the command line)", stacklevel=2,
        )
    return BvhFile(tuple(names), tuple(parents), np.asarray(offsets, np.float64), tuple(channels), values,
                   float(fps) if fps is not None else header_fps, header_frames, header_fps)


def _parse_hierarchy(path: Path, lines: list[str], first_line: int):
    names: list[str] = []
    parents: list[int] = []
    offsets: list[tuple[float, float, float] | None] = []
    channels: list[tuple[str, ...] | None] = []
    stack: list[int] = []  # open blocks: joint index, or -1 for an End Site
    pending: int | None = None  # a joint or End Site whose "{" comes next

    def fail(k: int, msg: str):
        raise CospeechError(f"{path}: line {first_line + k}: {msg}")

    for k, line in enumerate(lines):
        words = line.split()
        if not words:
            continue
        key = words[0]
        if pending is not None and key != "{":
            fail(k, f"expected '{{' after {'End Site' if pending < 0 else names[pending]!r}, got {key!r}")
        if key in ("ROOT", "JOINT"):
            name = line.strip()[len(key):].strip()
            if not name:
                fail(k, f"{key} without a name")
            if name in names:
                fail(k, f"joint {name!r} appears twice (a cycle or a broken hierarchy)")
            if key == "ROOT" and stack:
                fail(k, f"ROOT {name!r} inside joint {names[stack[-1]]!r}")
            if key == "JOINT" and (not stack or stack[-1] < 0):
                fail(k, f"JOINT {name!r} outside any joint" if not stack else f"JOINT {name!r} inside an End Site")
            names.append(name)
            parents.append(stack[-1] if key == "JOINT" else -1)
            offsets.append(None)
            channels.append(None)
            pending = len(names) - 1
        elif key == "End":
            if not stack or stack[-1] < 0:
                fail(k, "End Site outside a joint")
            pending = -1
        elif key == "{":
            if pending is None:
                fail(k, "'{' without a ROOT, JOINT or End Site before it")
            stack.append(pending)
            pending = None
        elif key == "}":
            if not stack:
                fail(k, "unbalanced '}'")
            j = stack.pop()
            if j >= 0 and offsets[j] is None:
                fail(k, f"joint {names[j]!r} has no OFFSET")
            if j >= 0 and channels[j] is None:
                fail(k, f"joint {names[j]!r} has no CHANNELS line")
        elif key == "OFFSET":
            if not stack:
                fail(k, "OFFSET outside a joint")
            try:
                off = tuple(float(v) for v in words[1:])
            except ValueError:
                off = ()
            if len(off) != 3 or not np.all(np.isfinite(off)):
                fail(k, f"OFFSET needs 3 numbers, got {' '.join(words[1:])!r}")
            if stack[-1] >= 0:
                offsets[stack[-1]] = off
        elif key == "CHANNELS":
            if not stack or stack[-1] < 0:
                fail(k, "CHANNELS outside a joint")
            if len(words) < 2 or not words[1].isdigit() or int(words[1]) != len(words) - 2:
                fail(k, f"CHANNELS count does not match the names that follow: {line.strip()!r}")
            chans = tuple(words[2:])
            bad = [c for c in chans if c not in _CHANNELS]
            if bad or len(set(chans)) != len(chans):
                fail(k, f"unknown or repeated channel {bad[0] if bad else chans!r}; expected some of {', '.join(_CHANNELS)}")
            channels[stack[-1]] = chans
        else:
            fail(k, f"unexpected {key!r} in the hierarchy")
    if stack or pending is not None:
        raise CospeechError(f"{path}: the hierarchy ends with {len(stack)} unclosed block(s); the file is cut or broken")
    if not names:
        raise CospeechError(f"{path}: the hierarchy has no ROOT joint")
    return names, parents, offsets, channels


def _parse_motion_header(path: Path, lines: list[str], motion_at: int) -> tuple[int, float]:
    head = [line.strip() for line in lines[motion_at + 1 : motion_at + 3]]
    try:
        if len(head) < 2 or not head[0].startswith("Frames:") or not head[1].startswith("Frame Time:"):
            raise ValueError
        frames, frame_time = int(head[0][len("Frames:"):]), float(head[1][len("Frame Time:"):])
    except ValueError:
        raise CospeechError(f"{path}: line {motion_at + 2}: expected 'Frames: N' and 'Frame Time: seconds'") from None
    if frames < 0 or not (np.isfinite(frame_time) and frame_time > 0):
        raise CospeechError(f"{path}: line {motion_at + 2}: Frames {frames} and Frame Time {frame_time} make no sense")
    return frames, frame_time


def _parse_rows(path: Path, lines: list[str], start: int, n_channels: int) -> np.ndarray:
    rows = [(k, line) for k, line in enumerate(lines[start:], start=start + 1) if line.strip()]
    values = np.empty((len(rows), n_channels))
    for i, (lineno, line) in enumerate(rows):
        words = line.split()
        if len(words) != n_channels:
            raise CospeechError(
                f"{path}: line {lineno}: {len(words)} values, but the hierarchy declares {n_channels} channels"
            )
        try:
            values[i] = [float(w) for w in words]
        except ValueError:
            bad = next(w for w in words if not _is_float(w))
            raise CospeechError(f"{path}: line {lineno}: {bad[:20]!r} is not a number") from None
        if not np.all(np.isfinite(values[i])):
            raise CospeechError(f"{path}: line {lineno}: NaN or infinite values")
    return values


def _is_float(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def read_bvh_smplx(path: str | Path, fps: float | None = None, scale: float = 0.01):
    """A BVH whose joints carry the SMPL-X names (as `cospeech` writes them) -> `SmplxMotion`
    with the root trajectory and every joint's rotation (no face expression). Positions are in
    the file's unit × `scale` (0.01: centimetres, the project's BVH unit) and the root's rest
    position is taken off, so a BVH written from a motion reads back as that motion.
    A file with another skeleton is a one-line error."""
    from .skeleton import PELVIS_REST, SMPLX_JOINTS
    from .smplx import SmplxMotion

    bvh = read_bvh(path, fps=fps)
    absent = [n for n in SMPLX_JOINTS if n not in bvh.names]
    if absent:
        raise CospeechError(f"{path}: not an SMPL-X skeleton ({len(absent)} of the 55 SMPL-X joints are absent, e.g. "
                            f"{absent[0]!r}; its root is {bvh.names[0]!r}); only BVH with SMPL-X joint names converts")
    order = [bvh.names.index(n) for n in SMPLX_JOINTS]
    poses = bvh.axis_angle()[:, order]  # (T, 55, 3)
    trans = bvh.translations()[:, order[0]] * scale - np.asarray(PELVIS_REST)  # (T, 3) metres
    parts = {"root_vel", "root_orient", "body", "jaw", "eyes", "hands"}
    return SmplxMotion(poses, trans, np.zeros((len(poses), 100), np.float32), bvh.fps, parts=frozenset(parts))
