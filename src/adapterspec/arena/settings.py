"""Every knob of the arena, in one place. Changing one changes what ``adapterspec arena`` measures; the results file
records the values it ran with, and the pages print them from there.
"""

from __future__ import annotations

# -- tier 1: one layer, teacher and student -----------------------------------------------------------------------
D_IN, D_OUT = 512, 256  # the layer (non-square; 256 and 512 so that every method's default block sizes divide them)
BUDGETS = (0.005, 0.02, 0.08)  # trainable parameters as a fraction of the layer's d_in * d_out
STEPS = 100  # Adam steps per fit (cosine-decayed learning rate), the same for every method
BATCH = 128  # inputs per step, sampled from a pool of 8,192 training inputs
# Adam learning rates per (method, target, budget) on seed 0: the middle three first, then outwards while the best is
# at an end of the rates tried (`runner.search_lr`)
LR_GRID = (8e-5, 4e-4, 2e-3, 1e-2, 5e-2, 2.5e-1, 1.25)
SEEDS = (0, 1, 2)  # seed 0 chooses the learning rate (validation batch); all three are reported (test batch)
EVAL_SAMPLES = 2048  # size of the validation batch and of the (separate) test batch
RELATIVE_SIZE = 0.25  # every target changes the layer's output by this fraction: ‖(W* − W0)x‖ = 0.25 ‖W0 x‖
OVER_BUDGET = 2.0  # a run whose real count exceeds the budget by this factor is shown but not compared
FIT, FAIL = 0.2, 0.8  # relative error at or below FIT: the method fits the target; at or above FAIL: it does not

# -- tier 2: a small pretrained transformer adapted to a shifted task (tasks in `adapterspec.arena.tier2`) ---------
TIER2_BUDGETS = (0.01, 0.04)  # trainable parameters as a fraction of the whole model's (about 71,000)
TIER2_STEPS = 100  # Adam steps of 64 sequences per fit
TIER2_LR_GRID = (4e-5, 2e-4, 1e-3, 5e-3, 2.5e-2, 1.25e-1, 6.25e-1)  # searched as LR_GRID
TIER2_PRETRAIN_STEPS = 1500  # the source model, trained once per run

# -- --quick: a smoke run of the same code (used by the test suite) -------------------------------------------------
QUICK_METHODS = ("lora", "ia3", "oft")
QUICK_TARGETS = ("low-rank", "output-gain", "input-rotation")
QUICK_BUDGETS = (0.02,)
QUICK_STEPS = 60
QUICK_LR_GRID = (1e-2,)
QUICK_SEEDS = (0, 1)
QUICK_SHAPE = (128, 64)  # (d_in, d_out)
QUICK_TIER2 = {"methods": ("lora", "ia3"), "budgets": (0.02,), "steps": 20, "lr_grid": (5e-3,), "pretrain": 60}
