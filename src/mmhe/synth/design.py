"""The plan of a synthetic dataset: participants, sessions, clocks, expressions.

Everything here is cheap and decided up front from the seed, before any signal is
made, so the coding file and the ground truth never depend on rendering order and a
participant can be (re)generated alone. Randomness: one `numpy.random.Generator` per
(seed, participant, purpose), see `participant_rng`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from functools import cache

import numpy as np

from mmhe.labels import REST_MARKER, au_prototypes, stimulus_categories
from mmhe.synth.clocks import CameraRun, DeviceClock, camera_run
from mmhe.synth.config import SynthConfig
from mmhe.synth.face import MACRO_APEX_INTENSITY, MICRO_APEX_INTENSITY

EEG_SFREQ = 1000.0
BIOPAC_SFREQ = 1000.0
NOISE_CODES = (77, 88)

CATEGORY_AFFECT: dict[str, tuple[float, float]] = {
    "rest": (0.0, -0.8),
    "calm": (0.1, -0.7),
    "happiness": (0.8, 0.5),
    "surprise": (0.3, 0.8),
    "sadness": (-0.6, -0.4),
    "fear": (-0.7, 0.8),
    "anger": (-0.7, 0.6),
    "disgust": (-0.8, 0.3),
    "tension": (-0.4, 0.5),
    "contempt": (-0.5, 0.2),
}
"""(valence, arousal) in [-1, 1] planted for each stimulus category (and rest)."""

AU_FREQUENCY: dict[int, int] = {
    4: 411,
    14: 234,
    1: 223,
    9: 193,
    6: 188,
    2: 187,
    42: 182,
    13: 175,
    15: 146,
    5: 143,
    16: 142,
    10: 132,
    20: 121,
    7: 97,
    17: 78,
    11: 73,
    12: 73,
    26: 65,
    18: 64,
    41: 42,
    25: 34,
}
"""AU counts over MEs in the dataset paper's Table 1 (weights for drawing AU sets)."""

CORE_AUS: dict[str, tuple[int, ...]] = {
    "happiness": (12,),
    "disgust": (9, 10),
    "fear": (1, 5, 20),
    "anger": (4,),
    "surprise": (1, 2),
    "sadness": (15, 1),
    "contempt": (14, 12),
    "tension": (4, 14, 24),
}
"""The AU(s) an expression of each emotion always shows one of."""

_SURNAMES = (
    "wang li zhang liu chen yang huang zhao wu zhou xu sun ma zhu hu guo he lin gao luo "
    "zheng liang xie song tang han feng deng cao peng zeng xiao tian dong pan yuan cai jiang"
).split()
_GIVEN = (
    "xiao min yan jie hui ling wei hao yu ting jun lei fang na qiang jing li xin yang tao "
    "chen mei lan peng fei bo rui yue xue hong ming kai qian wen zi han shu"
).split()

STREAMS = {
    "design": 0,
    "eeg": 1,
    "physio": 2,
    "camera": 3,
    "coding": 4,
    "people": 5,
    "biopac": 6,
    "distractors": 7,
}


def participant_rng(seed: int, index: int, purpose: str) -> np.random.Generator:
    """The random generator of participant `index` for one purpose (see `STREAMS`)."""
    return np.random.default_rng(np.random.SeedSequence([seed, index, STREAMS[purpose]]))


def frame_rng(seed: int, index: int, marker: int, grab: int) -> np.random.Generator:
    """The generator of one camera frame (noise), independent of rendering order."""
    return np.random.default_rng(np.random.SeedSequence([seed, index, 1000 + marker, grab]))


# ---------------------------------------------------------------- participants


@dataclass(frozen=True)
class Participant:
    """One participant: the Subject name of the coding file and the raw folder name."""

    index: int
    subject: str
    folder: str
    sex: str
    age: int
    session_date: dt.date


def make_participants(config: SynthConfig, seed: int) -> list[Participant]:
    """`config.subjects` participants with unique pinyin-like names (drawn in order)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, STREAMS["people"]]))
    people: list[Participant] = []
    used: set[str] = set()
    first_day = dt.date(2023, 6, 1)
    for index in range(config.subjects):
        name = ""
        while not name or name in used:
            parts = [_SURNAMES[rng.integers(len(_SURNAMES))]]
            parts += [_GIVEN[i] for i in rng.integers(len(_GIVEN), size=rng.integers(1, 3))]
            name = "".join(parts)
        used.add(name)
        date = first_day + dt.timedelta(days=int(rng.integers(0, 200)))
        dated_folder = not config.clean and rng.random() < 0.3
        folder = f"{name}{date:%Y%m%d}" if dated_folder else name
        sex = "M" if rng.random() < 143 / 275 else "F"
        people.append(Participant(index, name, folder, sex, int(rng.integers(18, 31)), date))
    return people


# ---------------------------------------------------------------- stimuli


@cache
def _categories() -> dict[int, str]:
    return stimulus_categories()


def stimulus_durations(config: SynthConfig, seed: int) -> dict[int, float]:
    """Duration (s) of every stimulus clip: a property of the film, the same for everyone."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 99]))
    markers = sorted(m for m in _categories() if m != REST_MARKER)
    factors = rng.uniform(0.85, 1.15, size=len(markers))
    return {m: round(config.clip_s * f, 3) for m, f in zip(markers, factors, strict=True)}


def choose_clips(n_clips: int, rng: np.random.Generator) -> list[int]:
    """`n_clips` markers, round-robin over the categories (balanced), in shuffled order."""
    by_category: dict[str, list[int]] = {}
    for marker, category in sorted(_categories().items()):
        if marker != REST_MARKER:
            by_category.setdefault(category, []).append(marker)
    pools = [list(rng.permutation(markers)) for _, markers in sorted(by_category.items())]
    chosen: list[int] = []
    while len(chosen) < n_clips:
        for position in rng.permutation(len(pools)):
            if pools[position] and len(chosen) < n_clips:
                chosen.append(int(pools[position].pop()))
    return [int(m) for m in rng.permutation(chosen)]


# ---------------------------------------------------------------- session


@dataclass(frozen=True)
class Block:
    """One marker on the trigger line, in EEG seconds: the rest, a clip or a noise code.

    `order` is the presentation position (0 = rest, 1.. clips, -1 noise); `clip_index`
    counts the clips of the same category seen so far (1-based), as in the Filename.
    """

    marker: int
    category: str
    onset_s: float
    offset_s: float
    order: int
    clip_index: int = 0

    @property
    def duration_s(self) -> float:
        return self.offset_s - self.onset_s


@dataclass(frozen=True)
class Expression:
    """One planted expression: true times on the EEG clock and the coded frames.

    `onset_frame`, `apex_frame`, `offset_frame` index the clip's `CameraRun` (written
    frames nearest the true times). `peaks` are the AU peak intensities (0..1).
    """

    marker: int
    number: int
    emotion: str
    kind: str
    aus: tuple[int, ...]
    peaks: tuple[float, ...]
    onset_s: float
    apex_s: float
    offset_s: float
    onset_frame: int
    apex_frame: int
    offset_frame: int


@dataclass
class Session:
    """Everything planned for one participant (times in EEG seconds)."""

    participant: Participant
    blocks: list[Block]
    noise: list[Block]
    eeg_duration_s: float
    biopac_span_s: tuple[float, float]
    clocks: dict[str, DeviceClock]
    runs: list[CameraRun]
    expressions: list[Expression] = field(default_factory=list)

    @property
    def clips(self) -> list[Block]:
        return [b for b in self.blocks if b.order > 0]

    @property
    def eeg_samples(self) -> int:
        return round(self.eeg_duration_s * EEG_SFREQ)

    @property
    def biopac_samples(self) -> int:
        return int(self.clocks["biopac"].sample(self.biopac_span_s[1]))

    def run(self, marker: int) -> CameraRun:
        return next(r for r in self.runs if r.marker == marker)


def _timeline(
    config: SynthConfig, clips: list[int], durations: dict[int, float], rng: np.random.Generator
) -> tuple[list[Block], list[Block], float]:
    categories = _categories()
    t = float(rng.uniform(8.0, 12.0))
    blocks = [Block(REST_MARKER, "rest", t, t + config.rest_s, 0)] if config.rest_s > 0 else []
    t += config.rest_s
    seen: dict[str, int] = {}
    gaps = []
    for order, marker in enumerate(clips, start=1):
        gap = float(rng.uniform(3.0, 6.0))
        gaps.append((t, t + gap))
        t += gap
        category = categories[marker]
        seen[category] = seen.get(category, 0) + 1
        blocks.append(
            Block(marker, category, t, t + float(durations[marker]), order, seen[category])
        )
        t += durations[marker]
    end = float(np.ceil(t + rng.uniform(3.0, 6.0)))  # whole seconds: EDF data records
    noise: list[Block] = []
    if not config.clean:
        for i in sorted(rng.choice(len(gaps), size=min(len(gaps), 2), replace=False)):
            start = float(rng.uniform(gaps[i][0] + 0.5, gaps[i][1] - 0.5))
            code = int(NOISE_CODES[rng.integers(len(NOISE_CODES))])
            noise.append(Block(code, "noise", start, start + float(rng.uniform(0.004, 0.012)), -1))
    return blocks, noise, end


def _clocks(
    rng: np.random.Generator, eeg_end_s: float, fps: float
) -> tuple[dict[str, DeviceClock], tuple[float, float]]:
    """EEG (reference), BIOPAC (starts -6..+5 s, +-50 ppm), camera (PC time of day, +-50 ppm)."""
    biopac_start = float(rng.uniform(-6.0, 5.0))
    biopac_drift = float(rng.uniform(-50.0, 50.0))
    biopac = DeviceClock(
        "biopac", -biopac_start * (1 + biopac_drift * 1e-6), biopac_drift, BIOPAC_SFREQ
    )
    camera_tod = float(rng.uniform(9 * 3600, 17 * 3600))
    camera = DeviceClock("camera", camera_tod, float(rng.uniform(-50.0, 50.0)), fps)
    eeg = DeviceClock("eeg", 0.0, 0.0, EEG_SFREQ)
    span = (biopac_start, eeg_end_s + float(rng.uniform(-1.0, 6.0)))
    return {"eeg": eeg, "biopac": biopac, "camera": camera}, span


def plan_session(
    config: SynthConfig, seed: int, participant: Participant, durations: dict[int, float]
) -> Session:
    """The whole plan of one participant's session (no signals yet)."""
    rng = participant_rng(seed, participant.index, "design")
    clips = choose_clips(config.clips, rng)
    blocks, noise, end = _timeline(config, clips, durations, rng)
    clocks, span = _clocks(rng, end, config.fps)
    counter = int(rng.integers(0, 1000))
    runs = []
    for block in sorted(blocks + noise, key=lambda b: b.onset_s):
        expected = block.duration_s * config.fps
        dropped = 0 if config.clean or block.order < 0 else int(rng.poisson(0.5 + expected / 3000))
        run = camera_run(
            clocks["camera"],
            block.marker,
            block.onset_s,
            block.offset_s,
            date=participant.session_date,
            counter_start=counter,
            rng=rng,
            dropped=dropped,
            protected=config.edge_frames + 1,
        )
        counter = (counter + len(run)) % 1000
        runs.append(run)
    session = Session(participant, blocks, noise, end, span, clocks, runs)
    session.expressions = [
        e for b in session.clips for e in _plan_expressions(config, session, b, rng)
    ]
    return session


# ---------------------------------------------------------------- expressions


def draw_aus(emotion: str, rng: np.random.Generator) -> tuple[int, ...]:
    """An AU set for `emotion`: one core AU plus 0-2 more from its prototype, by Table 1 weight."""
    prototype = sorted(au_prototypes()[emotion])
    core = [a for a in CORE_AUS[emotion] if a in prototype] or prototype[:1]
    chosen = {int(core[rng.integers(len(core))])}
    others = [a for a in prototype if a not in chosen]
    n_more = min(len(others), int(rng.choice([0, 1, 2], p=[0.35, 0.45, 0.2])))
    if n_more:
        weights = np.array([AU_FREQUENCY.get(a, 30) for a in others], dtype=float)
        extra = rng.choice(others, size=n_more, replace=False, p=weights / weights.sum())
        chosen.update(int(a) for a in extra)
    return tuple(sorted(chosen))


def _timing(config: SynthConfig, kind: str, rng: np.random.Generator) -> tuple[float, float]:
    """(total duration s, onset-to-apex s) of an ME (<= micro_max_s, apex ~40 %) or MaE."""
    if kind == "ME":
        total = float(np.clip(rng.normal(config.micro_mean_s, 0.09), 0.15, config.micro_max_s))
        return total, total * float(np.clip(rng.normal(0.4, 0.06), 0.25, 0.6))
    low, high = config.macro_range_s
    total = float(np.clip(config.macro_median_s * np.exp(rng.normal(0.0, 0.5)), low, high))
    onset_apex = max(total * float(rng.uniform(0.35, 0.6)), 0.25 + 3 / config.fps)
    return total, onset_apex


def _plan_expressions(
    config: SynthConfig, session: Session, block: Block, rng: np.random.Generator
) -> list[Expression]:
    if block.category == "calm" or config.expressions_per_clip == 0:
        return []
    run = session.run(block.marker)
    margin = (config.context_frames + config.edge_frames + 3) / config.fps
    slot_need = config.macro_range_s[1] + 2 * margin
    start, stop = run.eeg_t[0] + margin, run.eeg_t[-1] - margin
    n = min(int(rng.poisson(config.expressions_per_clip)), int((stop - start) // slot_need))
    slot = (stop - start) / max(n, 1)
    strength = config.strengths["face"]
    out: list[Expression] = []
    for k in range(n):
        kind = "ME" if rng.random() < config.micro_fraction else "MaE"
        total, onset_apex = _timing(config, kind, rng)
        emotion = block.category
        if not config.clean and emotion in ("anger", "disgust") and rng.random() < 0.15:
            emotion = "contempt"
        aus = draw_aus(emotion, rng)
        base = MICRO_APEX_INTENSITY if kind == "ME" else MACRO_APEX_INTENSITY
        peaks = tuple(
            round(float(np.clip(strength * base * rng.uniform(0.75, 1.25), 0, 1)), 3) for _ in aus
        )
        onset = start + k * slot + float(rng.uniform(0.0, slot - total - 2 * margin)) + margin
        apex, offset = onset + onset_apex, onset + total
        frames = [run.nearest_written(t) for t in (onset, apex, offset)]
        out.append(
            Expression(block.marker, k + 1, emotion, kind, aus, peaks, onset, apex, offset, *frames)
        )
    return out
