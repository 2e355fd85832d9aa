"""Vision: the task as images, a LLaVA-style policy, and joint text and image training (report 2.3.6).

k1.5 is trained jointly on text and vision data. Its RL vision data has three kinds (report 2.3.6 and the
vision-data appendix): real-world images, synthetic visual-reasoning images, and text-rendered data (text
problems drawn as images, so the model reasons the same way whatever the input). The miniature has the last
two, generated here with no download:

- ``rendered``: the problem's numbers drawn in a 5x7 bitmap font (:data:`FONT`), the three numbers on the
  first row of a 3x3 grid of 8x8-pixel cells, the target right-aligned on the second, with jitter and noise;
- ``dots``: the three numbers shown as that many dots at random places of a cell (counting is part of the
  problem), the target drawn as noisier digits. The report's synthetic images test spatial relations and
  geometric patterns; counting dots is a much smaller stand-in for "perceive before you reason".

The policy is a ``transformers`` ``LlavaForConditionalGeneration``: a CLIP vision encoder (2 layers, width
64) reads the 24x24 image as 9 patches, one per cell, a 2-layer MLP projects each patch into the
embeddings of the book's Llama policy, and the 9 vectors take the place of 9 ``<image>`` tokens in the
prompt. The language model starts from the shipped text warm-up. A response to an image first writes
what it reads, the problem's text (``4 3 5 -> 17``), then the same trace as for a text prompt: read, then
reason the same way whatever the input. That first line shows what the policy saw (:func:`read_problem`).

The sampler, the log-probs and the RL loop take images as one more input (``images=`` of
:func:`kimi_mini.rollout.sample`, ``RLConfig.modality``): there is no second RL loop.

Introduced in {ref}`ch11-title`.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from tokenizers import AddedToken
from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

from .config import Config, RLConfig, TaskConfig
from .tasks import Problem, instruction_text, make_problem, policy_prompts, prompt_text, warmup_example, without_bos

__all__ = [
    "IMAGE_TOKEN",
    "KINDS",
    "MODALITY_MIXES",
    "GRID",
    "CELL",
    "IMAGE_SIZE",
    "FONT",
    "VisionModelConfig",
    "glyph",
    "render_problem",
    "problem_image",
    "image_prompt",
    "add_image_token",
    "build_vision_policy",
    "is_vision_policy",
    "modalities_of",
    "policy_inputs",
    "image_response",
    "read_problem",
    "read_lines",
    "read_outcomes",
    "joint_example",
    "joint_batches",
    "mean_joint_tokens",
    "train_joint_warmup",
    "error_kind",
    "ERROR_KINDS",
    "image_instruction_text",
    "as_rgb",
    "load_vision_policy",
    "save_stand_in",
]

IMAGE_TOKEN = "<image>"
#: The kinds of input a problem can come in: its text, its text rendered as an image, or dots and drawn digits.
KINDS = ("text", "rendered", "dots")
#: ``RLConfig.modality``: which kinds an RL run trains on, in turn (problem i of an iteration gets kind i mod n).
MODALITY_MIXES = {
    "text": ("text",),
    "rendered": ("rendered",),
    "dots": ("dots",),
    "image": ("rendered", "dots"),
    "joint": ("text", "rendered", "dots"),
}
GRID = 3  # cells per side
CELL = 8  # pixels per cell side: one CLIP patch per cell
IMAGE_SIZE = GRID * CELL

#: A 5x7 bitmap font for the digits (``#`` is ink), the classic LCD-matrix shapes.
FONT = {
    "0": (".###.", "#...#", "#..##", "#.#.#", "##..#", "#...#", ".###."),
    "1": ("..#..", ".##..", "..#..", "..#..", "..#..", "..#..", ".###."),
    "2": (".###.", "#...#", "....#", "...#.", "..#..", ".#...", "#####"),
    "3": ("#####", "...#.", "..#..", "...#.", "....#", "#...#", ".###."),
    "4": ("...#.", "..##.", ".#.#.", "#..#.", "#####", "...#.", "...#."),
    "5": ("#####", "#....", "####.", "....#", "....#", "#...#", ".###."),
    "6": ("..##.", ".#...", "#....", "####.", "#...#", "#...#", ".###."),
    "7": ("#####", "....#", "...#.", "..#..", ".#...", ".#...", ".#..."),
    "8": (".###.", "#...#", "#...#", ".###.", "#...#", "#...#", ".###."),
    "9": (".###.", "#...#", "#...#", ".####", "....#", "...#.", ".##.."),
}
_NOISE = {"rendered": 0.1, "dots": 0.25}  # standard deviation of the pixel noise of each kind
#: Steps of the joint warm-up's first stage (reading) per step of its second (:func:`train_joint_warmup`).
READ_STEPS_PER_STEP = 2


@dataclass(frozen=True)
class VisionModelConfig:
    """The vision tower and projector of :func:`build_vision_policy` (the language model is given)."""

    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 2
    intermediate_size: int = 128
    channels: int = 1  # 3 for RGB images (the stand-in for a pretrained model, whose processor makes RGB)

    def __post_init__(self) -> None:
        for name in ("hidden_size", "num_layers", "num_heads", "intermediate_size", "channels"):
            value = getattr(self, name)
            if not isinstance(value, int) or not 1 <= value <= 65536:
                raise ValueError(f"VisionModelConfig.{name} = {value!r} is invalid: it must be an int in [1, 65536].")
        if self.hidden_size % self.num_heads:
            raise ValueError(
                f"VisionModelConfig.num_heads = {self.num_heads} is invalid: it must divide "
                f"hidden_size = {self.hidden_size}."
            )


def glyph(char: str) -> torch.Tensor:
    """The (7, 5) 0/1 bitmap of a digit in :data:`FONT`."""
    if char not in FONT:
        raise ValueError(f"no glyph for {char!r}: the font has the digits 0-9")
    return torch.tensor([[c == "#" for c in row] for row in FONT[char]], dtype=torch.float32)


def _place(image: torch.Tensor, cell: tuple[int, int], patch: torch.Tensor, rng: random.Random) -> None:
    """Draw ``patch`` (h, w) into grid cell ``(row, col)`` of ``image`` (H, W) at a random offset inside it."""
    h, w = patch.shape
    top = cell[0] * CELL + rng.randint(0, CELL - h)
    left = cell[1] * CELL + rng.randint(0, CELL - w)
    image[top : top + h, left : left + w] = torch.maximum(image[top : top + h, left : left + w], patch)


def _dots(n: int, rng: random.Random) -> torch.Tensor:
    """(8, 8): ``n`` 2x2 dots (n <= 9) at distinct random places of a 3x3 lattice."""
    out = torch.zeros(CELL, CELL)
    for spot in rng.sample(range(9), n):
        top, left = 3 * (spot // 3), 3 * (spot % 3)
        out[top : top + 2, left : left + 2] = 1.0
    return out


def render_problem(problem: Problem, kind: str, rng: random.Random, generator: torch.Generator) -> torch.Tensor:
    """The problem as a (1, 24, 24) image of the given ``kind`` (``rendered`` or ``dots``).

    Row 0 holds the three numbers (glyphs, or that many dots), row 1 the target's digits right-aligned
    (at most three), row 2 is empty; every glyph moves by a random offset inside its cell, and Gaussian
    noise (standard deviation 0.1 rendered, 0.25 dots) covers the whole image.
    """
    if kind not in _NOISE:
        raise ValueError(f"kind = {kind!r} is invalid: images are one of {tuple(_NOISE)}")
    if max(problem.numbers) > 9 or not 0 <= problem.target <= 999:
        raise ValueError(f"{problem} does not fit the image: numbers 0-9 and a target 0-999")
    image = torch.zeros(IMAGE_SIZE, IMAGE_SIZE)  # (H, W)
    for col, n in enumerate(problem.numbers):
        mark = glyph(str(n)) if kind == "rendered" else _dots(n, rng)
        _place(image, (0, col), mark, rng)
    digits = str(problem.target)
    for i, digit in enumerate(digits):
        ink = 1.0 if kind == "rendered" else rng.uniform(0.6, 1.0)  # drawn digits: uneven ink
        _place(image, (1, GRID - len(digits) + i), ink * glyph(digit), rng)
    noise = torch.randn(image.shape, generator=generator) * _NOISE[kind]
    return (image + noise).unsqueeze(0)  # (1, H, W)


def problem_image(problem: Problem, kind: str, seed: int = 0) -> torch.Tensor:
    """:func:`render_problem` with its randomness fixed by ``(problem, kind, seed)``: the same image every time."""
    key = f"{kind}:{problem.numbers}:{problem.target}:{seed}"
    rng = random.Random(key)  # a str seed is hashed with SHA-512: stable across processes
    generator = torch.Generator().manual_seed(rng.getrandbits(63))
    return render_problem(problem, kind, rng, generator)


def image_prompt() -> str:
    """The prompt of an image problem: one ``<image>`` token per cell, then a newline (the text prompt's end)."""
    return IMAGE_TOKEN * (GRID * GRID) + "\n"


def add_image_token(tokenizer) -> int:
    """Add ``<image>`` to ``tokenizer`` as a special token (if it is not there) and return its id."""
    if IMAGE_TOKEN not in tokenizer.get_vocab():
        tokenizer.add_tokens([AddedToken(IMAGE_TOKEN, special=True, normalized=False)], special_tokens=True)
    return tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)


def build_vision_policy(
    language_model, tokenizer, cfg: VisionModelConfig = VisionModelConfig(), seed: int = 0
) -> LlavaForConditionalGeneration:
    """A ``LlavaForConditionalGeneration`` whose language model is a copy of ``language_model`` (a
    ``LlamaForCausalLM``) with one more token, ``<image>``, added to ``tokenizer``; a new CLIP vision
    tower (``cfg``) sees 24x24 one-channel images as 9 patches of 8x8, and a new 2-layer GELU projector
    maps each patch into the language model's embedding space. Embeddings stay tied to the output layer.
    """
    image_id = add_image_token(tokenizer)
    text = language_model.config.to_dict()
    text_config = LlamaConfig(**{**text, "vocab_size": len(tokenizer)})
    vision_config = CLIPVisionConfig(
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        image_size=IMAGE_SIZE,
        patch_size=CELL,
        num_channels=cfg.channels,
        projection_dim=cfg.hidden_size,
    )
    config = LlavaConfig(
        vision_config=vision_config,
        text_config=text_config,
        image_token_index=image_id,
        vision_feature_layer=-1,  # the last layer (LLaVA-1.5 takes the second to last of a 24-layer CLIP)
        vision_feature_select_strategy="default",  # drop CLIP's class token: one feature per patch
        projector_hidden_act="gelu",
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config)
    _copy_language_model(language_model, model, image_id)
    return model.eval()


def _copy_language_model(source, model: LlavaForConditionalGeneration, image_id: int) -> None:
    """Load ``source``'s weights into ``model``'s language model; the ``<image>`` row of the (tied) embedding
    starts as the mean embedding (its input is always replaced by an image feature)."""
    state = dict(source.model.state_dict())
    old = state["embed_tokens.weight"]  # (V, D)
    state["embed_tokens.weight"] = torch.cat([old, old.mean(dim=0, keepdim=True)])[: image_id + 1]  # (V + 1, D)
    model.model.language_model.load_state_dict(state)
    model.tie_weights()


def is_vision_policy(policy) -> bool:
    """Whether ``policy`` reads images (its config has a vision part)."""
    return getattr(policy.config, "vision_config", None) is not None


def modalities_of(mix: str, n: int) -> list[str]:
    """The kind of each of ``n`` problems under ``RLConfig.modality = mix``: the mix's kinds in turn."""
    if mix not in MODALITY_MIXES:
        raise ValueError(f"modality = {mix!r} is invalid: it must be one of {tuple(MODALITY_MIXES)}")
    kinds = MODALITY_MIXES[mix]
    return [kinds[i % len(kinds)] for i in range(n)]


def policy_inputs(
    problems: list[Problem], tokenizer, style: str = "trace", mix: str = "text", seed: int = 0
) -> tuple[list[str], list[torch.Tensor | None] | None]:
    """``(prompts, images)`` for the problems under modality ``mix``: a text problem keeps its prompt
    (:func:`kimi_mini.tasks.policy_prompts`) and has no image, an image problem gets :func:`image_prompt`
    and its :func:`problem_image` (noise fixed by ``seed``). ``images`` is None when no problem is an image."""
    kinds = modalities_of(mix, len(problems))
    if all(kind == "text" for kind in kinds):
        return policy_prompts(problems, tokenizer, style), None
    if style == "chat":  # a pretrained vision-language model, through its processor
        return _chat_inputs(problems, kinds, tokenizer, seed)
    prompts = [policy_prompts([p], tokenizer)[0] if k == "text" else image_prompt() for p, k in zip(problems, kinds)]
    images = [None if k == "text" else problem_image(p, k, seed) for p, k in zip(problems, kinds)]
    return prompts, images


# A pretrained vision-language model (the GPU path of chapter 11) -----------------------------------------


def image_instruction_text() -> str:
    """The instruction that goes with an image problem for a pretrained chat model."""
    return (
        "The image shows three numbers on its first row and a target on its second. Use the three numbers, each "
        "exactly once, and two of the operations +, - and *, to make the target. The expression must have the "
        "form (x op y) op z. Think it through, then end with one line in exactly this format, with no spaces "
        "inside the expression: answer (2+1)*3"
    )


def as_rgb(image: torch.Tensor, scale: int = 8) -> np.ndarray:
    """A (1, H, W) problem image as an (H * scale, W * scale, 3) uint8 array, what image processors take."""
    gray = (image[0].clamp(0, 1) * 255).round().to(torch.uint8)  # (H, W)
    big = gray.repeat_interleave(scale, 0).repeat_interleave(scale, 1)  # (H * scale, W * scale)
    return big.unsqueeze(-1).expand(-1, -1, 3).numpy()


def load_vision_policy(
    name_or_path: str | Path,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    revision: str | None = None,
):
    """``(model, tokenizer)`` of a pretrained vision-language model (a local directory or a hub name such as
    ``llava-hf/llava-interleave-qwen-0.5b-hf``): ``AutoModelForImageTextToText`` and the processor's tokenizer,
    padding on the left, with the processor attached as ``tokenizer.vision_processor`` so that
    :func:`policy_inputs` (``style = "chat"``) and ``train_rl`` can build image prompts. Safetensors only, no
    remote code; ``revision`` pins a hub commit. Weights load in float32 unless ``dtype`` says otherwise (RL's
    AdamW needs float32 weights: in float16 its small updates round away). A local directory's weights are
    checked against its ``checksums.json`` when it has one (the stand-in does; a downloaded snapshot does not)."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from .policy import check_finite
    from .rundir import check_checksums

    if Path(name_or_path).is_dir() and (Path(name_or_path) / "checksums.json").exists():
        check_checksums(name_or_path)
    processor = AutoProcessor.from_pretrained(name_or_path, revision=revision)
    model = AutoModelForImageTextToText.from_pretrained(
        name_or_path, dtype=dtype, use_safetensors=True, revision=revision
    )
    check_finite(model, f"the weights of {name_or_path} are damaged")
    tokenizer = processor.tokenizer
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.vision_processor = processor
    return model.to(device).eval(), tokenizer


def _chat_inputs(problems, kinds, tokenizer, seed: int) -> tuple[list[str], list[torch.Tensor | None]]:
    """Chat prompts for a pretrained model, in the processor's chat template: text problems as
    :func:`kimi_mini.tasks.instruction_text`, image problems as the image and :func:`image_instruction_text`, the image token repeated as the processor
    expands it; images as the processor's pixel values, (C, H, W) each."""
    processor = getattr(tokenizer, "vision_processor", None)
    if processor is None:
        raise ValueError(
            "image problems with prompt_style = 'chat' need a pretrained vision-language model's tokenizer with its "
            "processor attached: load it with kimi_mini.vision.load_vision_policy"
        )
    prompts, images = [], []
    for problem, kind in zip(problems, kinds):
        if kind == "text":
            content = [{"type": "text", "text": instruction_text(problem)}]
        else:
            content = [{"type": "image"}, {"type": "text", "text": image_instruction_text()}]
        text = processor.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True)
        if kind == "text":
            prompts.append(without_bos(text, tokenizer))
            images.append(None)
            continue
        picture = as_rgb(problem_image(problem, kind, seed))
        enc = processor(text=[text], images=[picture], return_tensors="pt", add_special_tokens=False)
        token = processor.image_token
        n = int((enc["input_ids"] == tokenizer.convert_tokens_to_ids(token)).sum())
        prompts.append(without_bos(text, tokenizer).replace(token, token * n, 1))
        images.append(enc["pixel_values"][0])
    return prompts, images


#: A chat template for the stand-in's character tokenizer (hub models ship their own).
STAND_IN_TEMPLATE = (
    "{% for m in messages %}{{ m['role'] }}: {% if m['content'] is string %}{{ m['content'] }}{% else %}"
    "{% for c in m['content'] %}{% if c['type'] == 'image' %}<image>{% else %}{{ c['text'] }}{% endif %}"
    "{% endfor %}{% endif %}\n{% endfor %}{% if add_generation_prompt %}assistant: {% endif %}"
)


def save_stand_in(path: str | Path, seed: int = 0) -> Path:
    """A tiny, untrained stand-in for a pretrained LLaVA model, saved in the hub's layout (safetensors weights,
    a ``LlavaProcessor`` with a CLIP image processor, a tokenizer with a chat template): what
    :func:`load_vision_policy` reads, so the GPU path's code runs here on the CPU in seconds."""
    import string

    import transformers
    from transformers import LlavaProcessor

    from .config import ModelConfig
    from .policy import build_policy
    from .rundir import record_checksums
    from .tokenizer import CHARSET, build_char_tokenizer

    tokenizer = build_char_tokenizer(CHARSET + string.ascii_letters + ",.?'")
    tokenizer.chat_template = STAND_IN_TEMPLATE
    torch.manual_seed(seed)
    language_model = build_policy(
        ModelConfig(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64), tokenizer
    )
    model = build_vision_policy(language_model, tokenizer, VisionModelConfig(hidden_size=16, channels=3), seed)
    # the PIL backend needs no torchvision (transformers 5); older releases have only CLIPImageProcessor
    pil = getattr(transformers, "CLIPImageProcessorPil", None) or transformers.CLIPImageProcessor
    image_processor = pil(size={"shortest_edge": IMAGE_SIZE}, crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=CELL,
        vision_feature_select_strategy="default",
        chat_template=STAND_IN_TEMPLATE,
        image_token=IMAGE_TOKEN,
        num_additional_image_tokens=1,  # CLIP's class token, which the "default" strategy drops
    )
    path = Path(path)
    model.save_pretrained(path)
    processor.save_pretrained(path)
    record_checksums(path)
    return path


_READ_RE = re.compile(r"([0-9]) ([0-9]) ([0-9]) -> ([0-9]+)")

ERROR_KINDS = ("correct", "perception", "reasoning", "unread")


def image_response(problem: Problem, response: str) -> str:
    """The response to the problem's image: what it reads (the problem's text line), then ``response``."""
    return prompt_text(problem) + response


def read_problem(response: str) -> Problem | None:
    """The problem a response to an image says it read (its first line, ``4 3 5 -> 17``), or None."""
    m = _READ_RE.fullmatch(response.split("\n", 1)[0])
    return None if m is None else Problem(tuple(int(n) for n in m.groups()[:3]), int(m.group(4)))


def error_kind(problem: Problem, response: str, correct: int) -> str:
    """``correct``; ``unread`` if a wrong response to an image has no read line (its first line is not
    ``a b c -> target``); ``perception`` if it read the problem wrong (the line is another problem's);
    else ``reasoning`` (it read the problem right and still missed)."""
    if correct:
        return "correct"
    read = read_problem(response)
    return "unread" if read is None else "reasoning" if read == problem else "perception"


@torch.no_grad()
def read_lines(policy, tokenizer, problems: list[Problem], kind: str, seed: int = 0) -> list[Problem | None]:
    """What the policy reads from each problem shown as a ``kind`` image (noise seed ``seed``): its greedy
    read line as a :class:`Problem` (:func:`read_problem`), ``None`` where it wrote none. Greedy decoding
    measures what the policy sees, without sampling noise."""
    from .rollout import sample

    prompts, images = policy_inputs(problems, tokenizer, mix=kind, seed=seed)
    reads = sample(policy, tokenizer, prompts, max_new_tokens=14, temperature=0, images=images)
    return [read_problem(text) for text in reads.texts]


def read_outcomes(policy, tokenizer, problems: list[Problem], kind: str, seed: int = 0) -> list[int]:
    """For each problem shown as a ``kind`` image: 1 if the policy's greedy read line (:func:`read_lines`)
    is the problem's text, else 0."""
    return [int(read == p) for read, p in zip(read_lines(policy, tokenizer, problems, kind, seed), problems)]


def joint_example(
    problem: Problem, kind: str, rng: random.Random, task_cfg: TaskConfig = TaskConfig(), read_only: bool = False
):
    """``(prompt, response, image)`` of a warm-up example of ``kind``: the text warm-up's example
    (:func:`kimi_mini.tasks.warmup_example`; ``image`` None), or for an image the same response after the
    line that reads the problem (:func:`image_response`); with ``read_only``, that line alone (stage 1)."""
    prompt, response = warmup_example(problem, rng, task_cfg)
    if read_only:
        response = prompt_text(problem).rstrip("\n")
        return image_prompt(), response, problem_image(problem, kind, seed=rng.getrandbits(31))
    if kind == "text":
        return prompt, response, None
    return image_prompt(), image_response(problem, response), problem_image(problem, kind, seed=rng.getrandbits(31))


def joint_batches(
    tokenizer,
    batch_size: int,
    seed: int,
    task_cfg: TaskConfig = TaskConfig(),
    mix: str = "joint",
    bucket: int = 8,
    read_only: bool = False,
) -> Iterator[dict]:
    """An endless, seeded stream of joint warm-up batches: each example's kind drawn uniformly from the
    ``mix``'s kinds, examples bucketed by length like :func:`kimi_mini.sft.warmup_batches`; a batch holds
    ``pixel_values`` (n, 1, 24, 24) for its n image rows, in row order, when it has any. ``read_only``: image
    problems answered by the line that reads them, nothing else (:func:`joint_example`; stage 1)."""
    from .sft import collate, encode_example

    kinds, rng = MODALITY_MIXES[mix], random.Random(seed)
    while True:
        pool = []
        for _ in range(batch_size * bucket):
            problem, kind = make_problem(rng, task_cfg), rng.choice(kinds)
            prompt, response, image = joint_example(problem, kind, rng, task_cfg, read_only)
            pool.append((encode_example(tokenizer, prompt, response), image))
        pool.sort(key=lambda example: len(example[0][0]))
        chunks = [pool[i : i + batch_size] for i in range(0, len(pool), batch_size)]
        rng.shuffle(chunks)
        for chunk in chunks:
            batch = collate([example for example, _ in chunk], tokenizer.pad_token_id)
            images = [image for _, image in chunk if image is not None]
            if images:
                batch["pixel_values"] = torch.stack(images)  # (n, 1, H, W)
            yield batch


def mean_joint_tokens(
    tokenizer,
    task_cfg: TaskConfig = TaskConfig(),
    mix: str = "joint",
    n: int = 4096,
    seed: int = 0,
    read_only: bool = False,
) -> float:
    """Mean response tokens (``<eos>`` included) of ``n`` seeded :func:`joint_example` s."""
    from .sft import encode_example

    rng, kinds, total = random.Random(seed), MODALITY_MIXES[mix], 0
    for _ in range(n):
        problem, kind = make_problem(rng, task_cfg), rng.choice(kinds)
        prompt, response, _ = joint_example(problem, kind, rng, task_cfg, read_only)
        total += len(encode_example(tokenizer, prompt, response)[1]) - len(tokenizer(prompt)["input_ids"])
    return total / n


def train_joint_warmup(
    cfg: Config,
    out_dir: str | Path,
    text_policy: str | Path | None = None,
    n_eval: int = 512,
    progress: bool = True,
    device: torch.device | str = "cpu",
    vision_cfg: VisionModelConfig = VisionModelConfig(),
    mix: str = "joint",
    read_steps: int | None = None,
) -> dict:
    """The joint warm-up in LLaVA's two stages: a :func:`build_vision_policy` over the text warm-up
    ``text_policy`` (the shipped cpu-tiny one by default) learns first to read, ``read_steps`` steps
    (default :data:`READ_STEPS_PER_STEP` times ``cfg.sft.steps``) on image problems answered by the line that
    reads them (LLaVA's stage 1 aligns image features with captions),
    then to reason, ``cfg.sft.steps`` on :func:`joint_batches` of the ``mix`` (stage 2), both with
    :func:`kimi_mini.sft.train_sft` and ``cfg.sft``'s schedule. Saved to ``out_dir`` and evaluated on
    ``n_eval`` held-out problems of each kind (``metrics.json`` beside the weights records it all)."""
    from .device import versions
    from .policy import count_parameters, load_local_policy, save_policy
    from .rundir import SHIPPED_WARMUPS, sha256_of
    from .sft import train_sft
    from .train import heldout_outcomes

    text_policy = SHIPPED_WARMUPS["cpu-tiny"] if text_policy is None else text_policy
    language_model, tokenizer = load_local_policy(text_policy, "cpu", regenerate="make warmup")
    model = build_vision_policy(language_model, tokenizer, vision_cfg, seed=cfg.sft.seed)
    read_steps = READ_STEPS_PER_STEP * cfg.sft.steps if read_steps is None else read_steps
    stages = {}
    for stage, steps, read_only, kinds in (("read", read_steps, True, "image"), ("reason", cfg.sft.steps, False, mix)):
        sft = replace(cfg.sft, steps=steps, seed=cfg.sft.seed + (stage == "read"))
        batches = joint_batches(tokenizer, sft.batch_size, sft.seed, cfg.task, kinds, read_only=read_only)
        mean_tokens = mean_joint_tokens(tokenizer, cfg.task, kinds, seed=sft.seed + 1, read_only=read_only)
        stages[stage] = train_sft(
            model, tokenizer, sft, cfg.task, device, progress=progress, batches=batches, mean_tokens=mean_tokens
        )
    out_dir = save_policy(model, tokenizer, out_dir)
    rl = RLConfig(max_new_tokens=cfg.sample.max_new_tokens, temperature=cfg.sample.temperature)
    accuracy = {
        kind: sum(heldout_outcomes(model, tokenizer, rl, n_eval, cfg.task, modality=kind)["correct"]) / n_eval
        for kind in MODALITY_MIXES[mix]
    }
    metrics = dict(
        config=asdict(cfg),
        vision=asdict(vision_cfg),
        mix=mix,
        text_policy=str(text_policy),
        parameters=count_parameters(model),
        read_steps=read_steps,
        train=stages,
        eval=dict(problems=n_eval, accuracy=accuracy),
        versions=versions(),
        sha256=sha256_of(out_dir / "model.safetensors"),
    )
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=1))
    return metrics
