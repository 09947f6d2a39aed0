"""mPower finger tapping (PD vs control, age bias): loader for the Synapse export, and a simulated cohort.

Real data (``<data_root>/mpower/``, the Synapse export in its original format, see ``docs/mpower.md``)::

    tapping.csv          syn5511439 table: recordId, healthCode, tapping_results.json.TappingSamples (file handle id)
    demographics.csv     syn5511429 table: healthCode, age, professional-diagnosis
    tapping_samples/     <fileHandleId>.json per record, or any paths listed in
    filehandle_map.csv   (optional) fileHandleId,path  (paths relative to the mpower folder, or absolute)

Each JSON file is a list of taps ``{"TapTimeStamp": s, "TapCoordinate": "{x, y}", "TappedButtonId": ...}``.
A tap whose values are malformed, not finite or implausible (TapTimeStamp outside 0..1e9 s, a coordinate outside
+-1e4 points: :data:`TAP_TIME_RANGE_S`, :data:`MAX_ABS_COORDINATE`) is dropped and counted, naming file and record.
Without a data root the same files are written by :func:`simulate_cohort` (cached) and read by the same code.

Per record the model input is ``taps (6, max_taps)``: inter-tap interval in seconds (0 for the first tap),
``x / 320``, ``y / 568`` (iPhone points, 320 x 568 tapping view), one-hot button Left / Right / None; plus
``mask (max_taps,)``, true on real taps. The bias is the age bin (8 bins), the target professional diagnosis.

The code is split by concern: :mod:`.reader` (the export's files -> arrays), :mod:`.splits` (subject-wise splits),
:mod:`.simulator` (the simulated cohort), :mod:`.cache` (its cached copy), :mod:`.loader` (:func:`load_mpower`),
:mod:`.shortcut` (the hand-feature shortcut check) and :mod:`.cli` (``python -m python.data.mpower``).
"""

from __future__ import annotations

from .cache import prepare_simulated_cohort
from .cli import main
from .loader import SPEC, keep_subjects, load_mpower
from .reader import (
    AGE_BIN_EDGES,
    AGE_BIN_NAMES,
    BUTTONS,
    CHANNELS,
    DEMOGRAPHICS_COLUMNS,
    MAX_ABS_COORDINATE,
    SCREEN_POINTS,
    TAP_TIME_RANGE_S,
    TAPPING_COLUMNS,
    TAPPING_FILE_COLUMN,
    TEST_AGE_BINS,
    VALID_AGE,
    age_bin,
)
from .shortcut import REWEIGHTED_MODEL, SHORTCUT_MODELS, hand_features, shortcut_check
from .simulator import BUTTON_RECTS, COHORTS, SIMULATOR_VERSION, CohortSpec, SimulatorParams, simulate_cohort

__all__ = [
    "AGE_BIN_EDGES", "AGE_BIN_NAMES", "BUTTONS", "BUTTON_RECTS", "CHANNELS", "COHORTS", "DEMOGRAPHICS_COLUMNS",
    "MAX_ABS_COORDINATE", "REWEIGHTED_MODEL", "SCREEN_POINTS", "SHORTCUT_MODELS", "SIMULATOR_VERSION", "SPEC",
    "TAPPING_COLUMNS", "TAPPING_FILE_COLUMN", "TAP_TIME_RANGE_S", "TEST_AGE_BINS", "VALID_AGE", "CohortSpec",
    "SimulatorParams", "age_bin", "hand_features", "keep_subjects", "load_mpower", "main", "prepare_simulated_cohort",
    "shortcut_check", "simulate_cohort",
]
