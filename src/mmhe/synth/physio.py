"""The participant's body: heart, pulse, breathing, skin and muscles on the EEG clock.

Signals are made once per session on a 1000 Hz grid of EEG time and then sampled by
each device through its clock (BIOPAC columns, the EEG's EKG channel), so both devices
see the same heart beats. Waveforms come from NeuroKit2's simulators (one ECG cycle
from ``ecg_simulate(method="ecgsyn")``, one pulse from ``ppg_simulate``, EMG from
``emg_simulate``), time-warped by a continuous heart phase so the rate can change
smoothly; breathing is an asymmetric cosine cycle and skin conductance responses use
the canonical SCR shape of Bach et al. (2010, Int. J. Psychophysiol. 75:349).

Each block's category moves heart rate, breathing rate, SCR rate, skin temperature
and facial EMG by its (valence, arousal) (`design.CATEGORY_AFFECT`) times `strength`,
plus trial-to-trial noise that does not depend on the strength.

The ECG fights back as real ones do (`_ecg_artefacts`): a tall T wave (1-2.5x, per
participant), premature (ectopic) beats about every 150 beats, missed beats (QRS at 10 %)
about every 300, baseline wander and motion bursts. The planted truth stays the sinus
rhythm: `Body.r_peaks_s`, and per block its RMSSD and the artefact counts.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from functools import cache

import numpy as np
from scipy.ndimage import gaussian_filter1d, uniform_filter1d
from scipy.signal import find_peaks, oaconvolve

from mmhe.synth.design import CATEGORY_AFFECT, Block

GRID_HZ = 1000.0
ECG_R_OFFSET_S = 0.25
"""The ECG cycle template starts 250 ms before its R peak."""
PULSE_LAG_S = 0.45
"""Beat start -> PPG foot (R peak + ~200 ms pulse transit time)."""


@dataclass(frozen=True)
class Body:
    """Body signals on the grid ``t0_s + arange(n) / 1000`` (EEG seconds).

    Units: ecg mV, ppg V, rsp V, eda microsiemens, emg_a/emg_b mV, skt_a/skt_b deg C,
    heart_rate BPM (held from one R peak to the next). `r_peaks_s` in EEG seconds.
    `trial_targets` holds the planted per-block values (heart rate, breathing rate,
    SCR rate, skin temperature, sinus RMSSD in ms, ectopic and missed beats) for the
    ground truth. `ectopic_s` / `missed_s`: times of the R peaks shown early or with a
    10 % QRS. `eda_derivative` / `garbage_tail`: this participant's BIOPAC file also has
    an "EDA filtered, differentiated" channel / ends in 0.2 s of garbage.
    """

    t0_s: float
    ecg: np.ndarray
    ppg: np.ndarray
    rsp: np.ndarray
    eda: np.ndarray
    emg_a: np.ndarray
    emg_b: np.ndarray
    skt_a: np.ndarray
    skt_b: np.ndarray
    heart_rate: np.ndarray
    r_peaks_s: np.ndarray
    trial_targets: dict[int, dict[str, float]]
    ectopic_s: np.ndarray = field(default_factory=lambda: np.empty(0))
    missed_s: np.ndarray = field(default_factory=lambda: np.empty(0))
    eda_derivative: bool = False
    garbage_tail: bool = False

    @property
    def n(self) -> int:
        return len(self.ecg)

    def sample(self, name: str, t: np.ndarray) -> np.ndarray:
        """Signal `name` linearly interpolated at EEG times `t` (s)."""
        grid = self.t0_s + np.arange(self.n) / GRID_HZ
        return np.interp(t, grid, getattr(self, name))


# ---------------------------------------------------------------- templates


def _periodic(cycle: np.ndarray, points: int = 1000) -> np.ndarray:
    """Resample one cycle to `points` samples and remove the jump between its ends."""
    x = np.interp(np.linspace(0, len(cycle) - 1, points), np.arange(len(cycle)), cycle)
    return x - np.linspace(0.0, x[-1] - x[0], points)


@cache
def ecg_cycle() -> np.ndarray:
    """One ECG cycle (1000 points = 1 s at 60 BPM, mV), starting 250 ms before the R peak."""
    import neurokit2 as nk

    ecg = nk.ecg_simulate(
        duration=10,
        sampling_rate=1000,
        heart_rate=60,
        heart_rate_std=0,
        noise=0,
        method="ecgsyn",
        random_state=0,
    )
    peaks, _ = find_peaks(ecg, height=0.5 * ecg.max(), distance=500)
    start = peaks[4] - int(ECG_R_OFFSET_S * 1000)
    return _periodic(ecg[start : start + (peaks[5] - peaks[4]) + 1])


@cache
def ppg_cycle() -> np.ndarray:
    """One PPG pulse from foot to foot (1000 points), scaled to 0..1."""
    import neurokit2 as nk

    ppg = nk.ppg_simulate(
        duration=10,
        sampling_rate=1000,
        heart_rate=60,
        frequency_modulation=0,
        ibi_randomness=0,
        drift=0,
        motion_amplitude=0,
        powerline_amplitude=0,
        burst_number=0,
        random_state=0,
    )
    feet, _ = find_peaks(-ppg, distance=500)
    cycle = _periodic(ppg[feet[4] : feet[5] + 1])
    return (cycle - cycle.min()) / np.ptp(cycle)


def breath_cycle(phase: np.ndarray) -> np.ndarray:
    """Respiration belt shape at cycle phase 0..1: 40 % inhalation rise, 60 % exhalation."""
    inhale = phase < 0.4
    return np.where(inhale, -np.cos(np.pi * phase / 0.4), np.cos(np.pi * (phase - 0.4) / 0.6))


def scr_shape(sfreq: float, length_s: float = 40.0) -> np.ndarray:
    """Canonical skin conductance response (Bach et al. 2010), peak 1, shape (length,)."""
    t = np.arange(int(length_s * sfreq)) / sfreq
    rise = np.exp(-((t - 3.0745) ** 2) / (2 * 0.7013**2))
    decay = np.exp(-t / 3.1487) + np.exp(-t / 14.1257)
    response = oaconvolve(rise, decay)[: len(t)]
    return response / response.max()


# ---------------------------------------------------------------- helpers


def block_profile(
    n: int, t0_s: float, blocks: list[Block], values: list[float], ramp_s: float, baseline: float
) -> np.ndarray:
    """Piecewise-constant value per block on the grid, with linear ramps of `ramp_s`."""
    profile = np.full(n, baseline, dtype=float)
    for block, value in zip(blocks, values, strict=True):
        i, j = (np.rint((np.array([block.onset_s, block.offset_s]) - t0_s) * GRID_HZ)).astype(int)
        profile[max(i, 0) : max(j, 0)] = value
    width = max(int(ramp_s * GRID_HZ), 1)
    return uniform_filter1d(profile, width, mode="nearest")


def slow_noise(rng: np.random.Generator, n: int, correlation_s: float) -> np.ndarray:
    """Smooth Gaussian noise with unit SD varying over about `correlation_s` seconds."""
    step = max(1, int(correlation_s * GRID_HZ / 20))  # coarse grid, interpolated
    sigma = correlation_s * GRID_HZ / step
    coarse = gaussian_filter1d(rng.standard_normal(n // step + 2), sigma)
    coarse /= np.sqrt(1.0 / (2.0 * sigma * np.sqrt(np.pi)))  # SD of Gaussian-filtered white noise
    return np.interp(np.arange(n) / step, np.arange(len(coarse)), coarse)


def _phase(rate_per_min: np.ndarray) -> np.ndarray:
    """Cycles completed since the grid start for a rate in cycles per minute."""
    return np.cumsum(rate_per_min) / (60.0 * GRID_HZ)


# ---------------------------------------------------------------- body


def simulate_body(
    blocks: list[Block], t0_s: float, n: int, strength: float, rng: np.random.Generator
) -> Body:
    """Body signals for one session: `blocks` (rest and clips), grid start `t0_s`, `n` samples.

    Heart rate shifts by ``strength * (6 arousal - 2 valence)`` BPM, breathing rate by
    ``3 arousal`` per minute, SCR rate by ``exp(0.9 arousal)``, skin temperature by
    ``-0.5 arousal + 0.2 valence`` deg C, corrugator (EMG A) and zygomatic (EMG B)
    amplitude by ``exp(-+0.4 valence)``.
    """
    affect = np.array([CATEGORY_AFFECT[b.category] for b in blocks]).reshape(-1, 2)
    valence, arousal = affect[:, 0] * strength, affect[:, 1] * strength
    k = len(blocks)
    targets = {
        "heart_rate": rng.uniform(62, 80) + 6 * arousal - 2 * valence + rng.normal(0, 1.0, k),
        "breathing_rate": rng.uniform(12, 17) + 3 * arousal + rng.normal(0, 0.7, k),
        "scr_per_min": rng.uniform(1.5, 4.0) * np.exp(0.9 * arousal + rng.normal(0, 0.2, k)),
        "skin_temperature": rng.uniform(32.0, 34.5)
        - 0.5 * arousal
        + 0.2 * valence
        + rng.normal(0, 0.05, k),
        "corrugator_gain": np.exp(-0.4 * valence + rng.normal(0, 0.1, k)),
        "zygomatic_gain": np.exp(0.4 * valence + rng.normal(0, 0.1, k)),
    }
    baseline = {name: float(np.mean(v)) for name, v in targets.items()}
    profile = {
        name: block_profile(n, t0_s, blocks, list(values), 3.0, baseline[name])
        for name, values in targets.items()
    }

    breathing = profile["breathing_rate"] + 0.8 * slow_noise(rng, n, 5.0)
    breath_phase = _phase(breathing) + rng.uniform()
    rsp = breath_cycle(breath_phase % 1.0) * (0.8 + 0.1 * slow_noise(rng, n, 8.0))
    rsp += 0.02 * rng.standard_normal(n)

    heart_rate = (
        profile["heart_rate"]
        + 1.5 * slow_noise(rng, n, 10.0)
        + 2.5 * np.sin(2 * np.pi * breath_phase)
    )
    heart_phase = _phase(np.clip(heart_rate, 40, 140)) + rng.uniform()
    ecg = _warped_ecg(heart_phase)
    ecg = ecg * (1.0 + 0.05 * np.sin(2 * np.pi * breath_phase)) + 0.05 * rsp
    grid = t0_s + np.arange(n) / GRID_HZ
    ecg += 0.01 * rng.standard_normal(n) + 0.005 * np.sin(2 * np.pi * 50.0 * grid)
    pulse_phase = np.interp(grid - PULSE_LAG_S, grid, heart_phase)
    ppg_template = ppg_cycle()
    ppg = 0.5 * ppg_template[(np.mod(pulse_phase, 1.0) * len(ppg_template)).astype(int)]
    ppg = (
        ppg * (1.0 + 0.05 * rsp) + 0.02 * slow_noise(rng, n, 20.0) + 0.003 * rng.standard_normal(n)
    )

    starts = np.interp(np.arange(np.ceil(heart_phase[0]), heart_phase[-1]), heart_phase, grid)
    r_peaks = starts + ECG_R_OFFSET_S
    held = np.searchsorted(r_peaks, grid, side="right") - 1
    rates = 60.0 / np.diff(r_peaks, prepend=r_peaks[0] - 60.0 / baseline["heart_rate"])
    rate_signal = rates[np.clip(held, 0, len(rates) - 1)]

    eda = _skin_conductance(blocks, t0_s, n, targets, profile, rng)
    emg_a = _emg(n, rng) * profile["corrugator_gain"]
    emg_b = _emg(n, rng) * profile["zygomatic_gain"]
    skt = _skin_temperature(profile["skin_temperature"], rng)
    skt_b = skt + rng.uniform(-0.8, 0.8) + 0.05 * slow_noise(rng, n, 60.0)

    # drawn last, from their own stream, so the signals above stay as they were
    artefact_rng = np.random.default_rng(int(rng.integers(2**63)))
    ecg, ectopic, missed = _ecg_artefacts(ecg, t0_s, r_peaks, artefact_rng)
    trial_targets = {
        b.marker: {name: round(float(values[i]), 4) for name, values in targets.items()}
        for i, b in enumerate(blocks)
    }
    for b in blocks:
        inside = r_peaks[(r_peaks >= b.onset_s) & (r_peaks < b.offset_s)]
        rr_ms = np.diff(inside) * 1000.0
        trial_targets[b.marker].update(
            rmssd_ms=round(float(np.sqrt(np.mean(np.diff(rr_ms) ** 2))), 4)
            if rr_ms.size > 2
            else float("nan"),
            ectopic_beats=int(np.count_nonzero((ectopic >= b.onset_s) & (ectopic < b.offset_s))),
            missed_beats=int(np.count_nonzero((missed >= b.onset_s) & (missed < b.offset_s))),
        )
    return Body(
        t0_s,
        ecg,
        ppg,
        rsp,
        eda,
        emg_a,
        emg_b,
        skt,
        skt_b,
        rate_signal,
        r_peaks,
        trial_targets,
        ectopic,
        missed,
        eda_derivative=bool(artefact_rng.random() < 0.4),
        garbage_tail=bool(artefact_rng.random() < 0.4),
    )


def _ecg_artefacts(
    ecg: np.ndarray, t0_s: float, r_peaks: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ECG with a tall T wave, ectopic and missed beats, baseline wander and motion bursts.

    Returns (ecg in mV, ectopic R times, missed R times) in EEG seconds. An ectopic beat
    is the beat shown 30 % of an RR early with a compensatory pause (the sinus rhythm
    goes on); a missed beat has its QRS at 10 % (a lead moving); a motion burst is 1-2 s
    of 5-40 Hz noise of 0.3 mV.
    """
    n = ecg.size
    out = ecg.copy()
    r = np.rint((r_peaks - t0_s) * GRID_HZ).astype(int)
    # tall T wave: the T of every beat scaled, measured from the template's baseline
    t_gain = rng.uniform(1.0, 2.5)
    for start, stop in zip(r + 150, r + 450, strict=True):
        if 0 <= start and stop <= n:
            base = out[start]
            out[start:stop] = base + (out[start:stop] - base) * (
                1.0 + (t_gain - 1.0) * np.hanning(stop - start)
            )
    usable = np.flatnonzero((r > 2000) & (r < n - 2000))[1:-1]
    n_ectopic = min(rng.poisson(usable.size / 150), usable.size // 4)
    n_missed = min(rng.poisson(usable.size / 300), usable.size // 4)
    chosen = rng.choice(usable, size=n_ectopic + n_missed, replace=False)
    ectopic, missed = np.sort(chosen[:n_ectopic]), np.sort(chosen[n_ectopic:])
    for k in ectopic:
        shift = int(0.3 * (r[k] - r[k - 1]))
        start, stop = r[k] - 250, min(r[k] + 350, r[k + 1] - 250)
        beat = out[start:stop].copy()
        out[start - shift : stop - shift] = beat
        out[stop - shift : stop] = beat[-1]  # compensatory pause
    for k in missed:
        start, stop = r[k] - 40, r[k] + 40
        base = np.linspace(out[start], out[stop], stop - start)
        out[start:stop] = base + 0.1 * (out[start:stop] - base)
    out += 0.2 * slow_noise(rng, n, 6.0)  # baseline wander
    for _ in range(rng.poisson(n / GRID_HZ / 180.0)):
        length = int(rng.uniform(1.0, 2.0) * GRID_HZ)
        start = int(rng.integers(0, max(n - length, 1)))
        burst = gaussian_filter1d(rng.standard_normal(length), 4.0)
        burst = burst - gaussian_filter1d(burst, 25.0)
        out[start : start + length] += 0.3 * burst / (burst.std() + 1e-12)
    return out, t0_s + r[ectopic] / GRID_HZ, t0_s + r[missed] / GRID_HZ


def _warped_ecg(heart_phase: np.ndarray) -> np.ndarray:
    """ECG from the cycle template, warped by the heart phase.

    P-QRS-T scales with sqrt(RR) (Bazett's QT rule); the diastole absorbs the rest.
    """
    template = ecg_cycle()
    beat = np.floor(heart_phase)
    local = heart_phase - beat  # 0..1 within the beat
    boundaries = np.searchsorted(heart_phase, np.arange(beat[0], beat[-1] + 2))
    lengths = np.diff(boundaries) / GRID_HZ
    rr = np.repeat(np.clip(lengths, 0.3, 2.0), np.diff(boundaries))[: len(heart_phase)]
    seconds = local * rr  # time since beat start
    systole = 0.62 * np.sqrt(rr)
    template_t = np.where(
        seconds < systole,
        seconds / np.sqrt(rr),
        0.62 + 0.38 * (seconds - systole) / np.maximum(rr - systole, 1e-3),
    )
    index = np.clip((template_t * len(template)).astype(int), 0, len(template) - 1)
    return template[index]


def _skin_conductance(blocks, t0_s, n, targets, profile, rng) -> np.ndarray:
    """Tonic level + SCRs at Poisson times with each block's rate (microsiemens)."""
    spikes = np.zeros(n)
    rate = np.full(n, np.mean(targets["scr_per_min"]) * 0.6)  # between blocks
    for block, per_min in zip(blocks, targets["scr_per_min"], strict=True):
        i, j = (np.rint((np.array([block.onset_s, block.offset_s]) - t0_s) * GRID_HZ)).astype(int)
        rate[max(i, 0) : max(j, 0)] = per_min
    events = np.flatnonzero(rng.random(n) < rate / (60.0 * GRID_HZ))
    spikes[events] = rng.lognormal(np.log(0.25), 0.5, len(events))
    tonic = rng.uniform(2.0, 8.0) + 0.4 * slow_noise(rng, n, 60.0)
    scr = oaconvolve(spikes, scr_shape(GRID_HZ))[:n]
    return tonic + scr + 0.005 * rng.standard_normal(n)


def _emg(n: int, rng: np.random.Generator) -> np.ndarray:
    """Facial EMG in mV: NeuroKit2's EMG simulation with a few bursts."""
    import neurokit2 as nk

    duration = n / GRID_HZ
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        emg = nk.emg_simulate(
            duration=duration,
            length=n,
            sampling_rate=int(GRID_HZ),
            burst_number=max(1, int(duration // 30)),
            burst_duration=0.4,
            random_state=int(rng.integers(2**31)),
        )
    return 0.02 * np.asarray(emg[:n])


def _skin_temperature(target: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Finger temperature (deg C) approaching each block's target with a 15 s time constant."""
    from scipy.signal import lfilter

    alpha = 1.0 / (15.0 * GRID_HZ)
    y, _ = lfilter([alpha], [1.0, alpha - 1.0], target, zi=[target[0] * (1 - alpha)])
    return y + 0.1 * slow_noise(rng, len(target), 90.0) + 0.002 * rng.standard_normal(len(target))
