"""Generation tasks over the prompt sets of :mod:`qcompress_plugins.tasks.prompt_sets` (no
data directory needed):

- ``identity``: the identity questions, each in every wrapper asked for, to score (ICE-lite;
  each prompt's group is its wrapper); the general prompts to train on, so that a student
  distilled from the teacher's responses never saw an evaluation prompt.
- ``prompts``: the general prompts, each kind cut into a training and an evaluation part
  (``eval_fraction`` of each kind, after a seeded shuffle); groups are the kinds (RSE-lite).

Both decode greedily up to ``max_new_tokens`` through the model's chat template where it has
one (``chat_template: never`` to prompt every model raw).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch
from pydantic import Field

from qcompress import hookimpl
from qcompress.interfaces import GenerationSettings, Split, Task, TaskConfig, TaskData
from qcompress.tasks import subsample
from qcompress_plugins.kinds import GENERATION
from qcompress_plugins.tasks.prompt_sets import (
    GENERAL_PROMPTS,
    WRAPPERS,
    general_prompts,
    identity_prompts,
)

WrapperName = Literal["plain", "ignore-instructions", "role-play", "indirect", "developer-mode"]


class PromptTaskConfig(TaskConfig):
    max_new_tokens: int = Field(default=64, ge=1, le=4096, description="tokens generated")
    chat_template: Literal["auto", "never"] = Field(
        default="auto", description="auto: through the model's chat template where it has one"
    )

    def generation(self) -> GenerationSettings:
        return GenerationSettings(
            max_new_tokens=self.max_new_tokens, chat_template=self.chat_template
        )


class IdentityConfig(PromptTaskConfig):
    wrappers: list[WrapperName] = Field(
        default_factory=lambda: list(WRAPPERS), min_length=1,
        description="the wrappers each identity question is asked in",
    )  # fmt: skip


class PromptsConfig(PromptTaskConfig):
    eval_fraction: float = Field(default=0.5, gt=0, lt=1, description="of each kind, to score")


def _task(
    name: str,
    config: PromptTaskConfig,
    splits: tuple[Split, Split],
    groups: list[str],
    provenance: dict[str, object],
) -> TaskData:
    """The loaded task: both splits subsampled as the config says, the groups as label names."""
    return TaskData(
        name=name,
        label_names=groups,
        train=subsample(splits[0], config.train_size, config.seed),
        eval=subsample(splits[1], config.eval_size, config.seed),
        kind=GENERATION,
        provenance={
            "source": "qcompress_plugins/tasks/prompt_sets.py",
            **provenance,
            "subsample_seed": config.seed,
        },
        generation=config.generation(),
    )


def _labelled(pairs: list[tuple[str, str]], names: list[str]) -> Split:
    return Split(
        [text for text, _ in pairs],
        torch.tensor([names.index(group) for _, group in pairs], dtype=torch.long),
    )


class IdentityTask(Task):
    Config = IdentityConfig
    description = "identity questions in wrappers to score (ICE-lite); general prompts to train"
    kind = GENERATION
    name = "identity"

    def load(self, data_dir: Path | None) -> TaskData:
        config: IdentityConfig = self.config
        wrappers = list(dict.fromkeys(config.wrappers))
        evaluation = _labelled(identity_prompts(wrappers), wrappers)
        train = Split([prompt for prompt, _ in general_prompts()])
        provenance = {"train": "general prompts", "eval": "identity questions x wrappers"}
        return _task(self.name, config, (train, evaluation), wrappers, provenance)


class PromptsTask(Task):
    Config = PromptsConfig
    description = "general prompts of mixed kinds, each kind cut into train and eval (RSE-lite)"
    kind = GENERATION
    name = "prompts"

    def load(self, data_dir: Path | None) -> TaskData:
        config: PromptsConfig = self.config
        kinds = list(GENERAL_PROMPTS)
        generator = torch.Generator().manual_seed(config.seed)
        train_pairs, eval_pairs = [], []
        for kind in kinds:
            pairs = [pair for pair in general_prompts() if pair[1] == kind]
            order = torch.randperm(len(pairs), generator=generator).tolist()
            cut = len(pairs) - max(1, round(len(pairs) * config.eval_fraction))
            train_pairs += [pairs[i] for i in order[:cut]]
            eval_pairs += [pairs[i] for i in order[cut:]]
        splits = (_labelled(train_pairs, kinds), _labelled(eval_pairs, kinds))
        return _task(self.name, config, splits, kinds, {"eval_fraction": config.eval_fraction})


@hookimpl
def register_tasks(register):
    register("identity", IdentityTask)
    register("prompts", PromptsTask)
