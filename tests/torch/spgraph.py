"""spgraph: shardprop's model spec language, graphs included, as a PyTorch module.

The PyTorch cross-checks need the same network as shardprop, with the same parameter names, so
that a shardprop checkpoint loads into PyTorch with load_state_dict(strict=True) and a PyTorch
state can be written in shardprop's layout. This module is that one translation; the tests in
tests/torch/ import it (ckpt_torch.py's load_checkpoint builds its model here).

The spec language
-----------------
Whitespace and newlines are insignificant between tokens; '#' starts a comment to the end of
the line.

    seq   := item { ',' item }
    item  := layer | 'residual' '(' seq [ '|' seq ] ')' | 'repeat' ':' N '(' seq ')'
    layer := NAME { ':' ARG }          ARG = a value or key=value, positional ones first

    dense:UNITS[:bias=0|1][:tie]                 conv2d:OUT:K[:stride=S][:pad=P][:bias=0|1]
    maxpool:K[:stride=S]  avgpool:K[:stride=S]   (stride defaults to K)
    flatten  relu  tanh  sigmoid  leaky_relu[:SLOPE] (0.01)  dropout:P
    gelu (erf form)  gelu:tanh (GPT-2's)         gelu[:approximate=none|tanh]
    batchnorm[:eps=E][:momentum=M] (1e-5, 0.1)   BatchNorm1d on (F), BatchNorm2d on (C, H, W)
    layernorm[:eps=E]                            LayerNorm over the whole sample shape; on a
                                                 sequence (T, D) over D, at every position
    gap                                          (C, H, W) -> (C), the mean over H and W
    upsample:S                                   nearest, by an integer factor S
    save:NAME  add:NAME  concat:NAME             name the current tensor; add / concatenate
                                                 (dim 1) the most recent save of NAME
    residual(f)  residual(f | g)                 y = f(x) + x,  y = f(x) + g(x)
    repeat:N(seq)                                N copies of seq, each with its own parameters

Sequences (a language model, GPT-2's layers): the input is (T) token ids, floats holding
integers; `embedding` makes a sequence (T, D), on which the layers act at every position.

    embedding:VOCAB:DIM                          nn.Embedding(VOCAB, DIM): (T) ids -> (T, DIM)
    pos_embedding                                y = x + P[arange(T)], P (T, D) learned
    attention:heads=H[:bias=0|1]                 GPT-2's causal self-attention: qkv =
                                                 nn.Linear(C, 3C), the heads, proj =
                                                 nn.Linear(C, C) (submodules P.qkv, P.proj)
    dense:UNITS on (T, D)                        nn.Linear(D, UNITS) at every position
    dense:V:tie                                  nn.Linear(D, V, bias=False) whose weight is
                                                 the first embedding's (V, D) weight: no tensor
                                                 of its own, its gradient the sum of both uses

As in shardprop's C parser (src/model/spec.c), the arguments shardprop has always had (units,
out_channels, kernel, stride, pad, slope, p) may be given positionally in that order or by
that name (conv2d:8:3:2:1 is conv2d:8:3:stride=2:pad=1); bias, eps and momentum only as
key=value, upsample's S and the NAMEs only positionally. Of the sequence layers' arguments,
vocab and dim (embedding:40:32 is embedding:vocab=40:dim=32), heads and gelu's approximate
(none or tanh) go either way; tie is the bare word or tie=0|1, and a tied dense has no bias
(bias=1 with tie is an error). A NAME is a letter or '_' followed by letters, digits and '_'.

Module paths, state_dict keys and checkpoint names
--------------------------------------------------
The items of the top-level seq are numbered 0, 1, 2, ... by position: every item counts,
save/add/concat too. A residual at i has the sequences i.f and i.g (g absent for the identity
shortcut), a repeat at i has the copies i.0, i.1, ..., each a sequence, and nesting composes
(3.1.f.2). An attention at P holds its two projections as P.qkv and P.proj. A module's
tensors are "<path>.weight", "<path>.bias" and, for batchnorm, "<path>.running_mean",
"<path>.running_var", "<path>.num_batches_tracked": exactly the state_dict keys of the module
build() returns. A tied dense has none (its weight is stored once, as the embedding's). In
a checkpoint the tensor "<path>.<name>" is the dataset /model/params/<path>/<name> (one group
per module, its name the dotted path): key_from_name and name_from_key convert.

Execution order is the text's: in residual(f | g), f runs before g, which matters only when a
branch saves a name. A saved name is visible everywhere after the save in that order (inside
and after residuals and repeats); add/concat read the most recent save.

Public functions
----------------
parse(spec)                   the tree: a list of Layer, Residual and Repeat
build(spec, input_shape)      a Graph (torch.nn.Module) whose state_dict keys are the paths
load_checkpoint(path)         (Graph in eval mode, spec, input_shape) from a shardprop file
lm_loss(logits, targets)      a language model's loss: cross-entropy, the mean over B*T tokens
read_state(src)               the tensors under /model/params as a state dict
save_state(module, dest)      write a module's tensors (and /model's spec, input_shape)
key_from_name(name)           "/model/params/3.g.0/weight" -> "3.g.0.weight"
name_from_key(key)            "3.g.0.weight" -> "/model/params/3.g.0/weight"
SpecError                     a bad spec (or a spec that does not fit the input): .pos

Run with /usr/bin/python3 (torch, h5py, numpy); spgraph_selftest.py tests this module alone.
"""
import math
import os
import re
from dataclasses import dataclass, field

import h5py
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["SpecError", "Layer", "Residual", "Repeat", "Graph", "parse", "build",
           "load_checkpoint", "read_state", "save_state", "key_from_name", "name_from_key",
           "lm_loss"]


# ---- errors -------------------------------------------------------------------------------------

class SpecError(ValueError):
    """A spec that does not parse, or does not fit its input shape. `pos` is the 0-based
    offset in the spec of what is wrong (spec[pos] is its first character; len(spec) for the
    end), so that a long, multi-line spec can be fixed without guessing which item is meant."""

    def __init__(self, message, spec, pos):
        self.message, self.spec, self.pos = message, spec, pos
        line_start = spec.rfind("\n", 0, pos) + 1
        line_end = spec.find("\n", pos)
        line_end = len(spec) if line_end < 0 else line_end
        line = spec.count("\n", 0, pos) + 1
        col = pos - line_start + 1
        text = spec[line_start:line_end]
        super().__init__(f"model spec, offset {pos} (line {line}, column {col}): {message}\n"
                         f"  {text}\n  {' ' * (col - 1)}^")


# ---- the tree -----------------------------------------------------------------------------------
# pos and text are where the item was written, kept for messages; they do not take part in ==,
# so that two spellings of one model (spacing, comments, defaults written out) compare equal.

@dataclass
class Layer:
    """One layer: its kind and every argument by name, defaults filled in."""
    kind: str
    args: dict
    pos: int = field(default=0, compare=False)
    text: str = field(default="", compare=False)


@dataclass
class Residual:
    """residual(f | g): y = f(x) + g(x); g is None for the identity shortcut."""
    f: list
    g: list | None
    pos: int = field(default=0, compare=False)


@dataclass
class Repeat:
    """repeat:N(body): N copies of body in a row."""
    n: int
    body: list
    pos: int = field(default=0, compare=False)


# ---- the layers and their arguments -------------------------------------------------------------

_REQUIRED = object()


@dataclass
class _Arg:
    name: str
    convert: object  # text -> value, or raise ValueError(what is wrong)
    default: object = _REQUIRED
    positional: bool = True
    keyword: bool = True
    bare: bool = False  # the name alone is the flag set (dense:V:tie)


def _int(lo):
    def convert(text):
        if not re.fullmatch(r"[+-]?\d+", text) or not lo <= int(text) <= 1000000:
            raise ValueError(f"must be an integer >= {lo}, got '{text}'")
        return int(text)
    return convert


def _number(text):  # a decimal number as strtod reads one (no inf, nan, '_')
    if not re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?", text):
        raise ValueError(f"must be a number, got '{text}'")
    v = float(text)
    if not np.isfinite(v):
        raise ValueError(f"must be a finite number, got '{text}'")
    return v


def _positive(text):
    v = _number(text)
    if not v > 0:
        raise ValueError(f"must be > 0, got '{text}'")
    return v


def _fraction(text):  # batchnorm's momentum: r = (1 - m) r + m v
    v = _number(text)
    if not 0 <= v <= 1:
        raise ValueError(f"must be in [0, 1], got '{text}'")
    return v


def _probability(text):  # dropout, as the C parser: [0, 1)
    v = _number(text)
    if not 0 <= v < 1:
        raise ValueError(f"must be in [0, 1), got '{text}'")
    return v


def _flag(text):
    if text not in ("0", "1"):
        raise ValueError(f"must be 0 or 1, got '{text}'")
    return text == "1"


def _name(text):
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", text):
        raise ValueError(f"must be a name (a letter or '_', then letters, digits, '_'), "
                         f"got '{text}'")
    return text


def _bias():
    return _Arg("bias", _flag, True, positional=False)


def _approximate(text):  # gelu: nn.GELU(approximate='none' | 'tanh')
    if text not in ("none", "tanh"):
        raise ValueError(f"must be tanh or none, got '{text}'")
    return text


# kind -> (arguments in positional order, usage for messages)
_KINDS = {
    "dense": ([_Arg("units", _int(1)), _bias(),
               _Arg("tie", _flag, False, positional=False, bare=True)],
              "dense:UNITS[:bias=0|1][:tie]"),
    "conv2d": ([_Arg("out_channels", _int(1)), _Arg("kernel", _int(1)),
                _Arg("stride", _int(1), 1), _Arg("pad", _int(0), 0), _bias()],
               "conv2d:OUT:K[:stride=S][:pad=P][:bias=0|1]"),
    "maxpool": ([_Arg("kernel", _int(1)), _Arg("stride", _int(1), None)], "maxpool:K[:stride=S]"),
    "avgpool": ([_Arg("kernel", _int(1)), _Arg("stride", _int(1), None)], "avgpool:K[:stride=S]"),
    "flatten": ([], "flatten"),
    "relu": ([], "relu"),
    "leaky_relu": ([_Arg("slope", _number, 0.01)], "leaky_relu[:SLOPE]"),
    "tanh": ([], "tanh"),
    "sigmoid": ([], "sigmoid"),
    "gelu": ([_Arg("approximate", _approximate, "none")], "gelu[:tanh]"),
    "dropout": ([_Arg("p", _probability)], "dropout:P"),
    "batchnorm": ([_Arg("eps", _positive, 1e-5, positional=False),
                   _Arg("momentum", _fraction, 0.1, positional=False)],
                  "batchnorm[:eps=E][:momentum=M]"),
    "layernorm": ([_Arg("eps", _positive, 1e-5, positional=False)], "layernorm[:eps=E]"),
    "gap": ([], "gap"),
    "upsample": ([_Arg("scale", _int(1), keyword=False)], "upsample:S"),
    "save": ([_Arg("name", _name, keyword=False)], "save:NAME"),
    "add": ([_Arg("name", _name, keyword=False)], "add:NAME"),
    "concat": ([_Arg("name", _name, keyword=False)], "concat:NAME"),
    "embedding": ([_Arg("vocab", _int(1)), _Arg("dim", _int(1))], "embedding:VOCAB:DIM"),
    "pos_embedding": ([], "pos_embedding"),
    "attention": ([_Arg("heads", _int(1)), _bias()], "attention:heads=H[:bias=0|1]"),
}


# ---- parsing ------------------------------------------------------------------------------------

_PUNCT = ",:()|="


@dataclass
class _Token:
    kind: str  # one of _PUNCT, "word", or "end"
    text: str
    pos: int


def _tokens(spec):
    """Words (maximal runs of anything but blanks, punctuation and '#') and punctuation, with
    their offsets; comments and blanks dropped. The last token is "end" at len(spec)."""
    out, i, n = [], 0, len(spec)
    while i < n:
        c = spec[i]
        if c.isspace():
            i += 1
        elif c == "#":
            j = spec.find("\n", i)
            i = n if j < 0 else j
        elif c in _PUNCT:
            out.append(_Token(c, c, i))
            i += 1
        else:
            j = i
            while j < n and not spec[j].isspace() and spec[j] not in _PUNCT and spec[j] != "#":
                j += 1
            out.append(_Token("word", spec[i:j], i))
            i = j
    out.append(_Token("end", "", n))
    return out


def _describe(tok):
    return "the end of the spec" if tok.kind == "end" else f"'{tok.text}'"


class _Parser:
    """Recursive descent over the token list, one method per grammar rule."""

    def __init__(self, spec):
        self.spec = spec
        self.toks = _tokens(spec)
        self.i = 0

    def peek(self):
        return self.toks[self.i]

    def take(self):
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def fail(self, message, pos):
        raise SpecError(message, self.spec, pos)

    def expect(self, kind, what):
        tok = self.take()
        if tok.kind != kind:
            self.fail(f"expected {what}, got {_describe(tok)}", tok.pos)
        return tok

    def seq(self):
        items = [self.item()]
        while self.peek().kind == ",":
            self.take()
            items.append(self.item())
        return items

    def item(self):
        tok = self.peek()
        if tok.kind != "word":
            after_comma = self.i > 0 and self.toks[self.i - 1].kind == ","
            self.fail(f"expected a layer, 'residual(' or 'repeat:N(', got {_describe(tok)}"
                      + (" (two commas in a row, or a trailing comma?)" if after_comma else ""),
                      tok.pos)
        if tok.text == "residual":
            self.take()
            self.expect("(", "'(' after residual")
            f = self.seq()
            g = None
            if self.peek().kind == "|":
                self.take()
                g = self.seq()
            self.expect(")", "',', '|' or ')' in residual(...)" if g is None
                        else "',' or ')' in residual(... | ...)")
            return Residual(f, g, tok.pos)
        if tok.text == "repeat":
            self.take()
            self.expect(":", "':N' after repeat (repeat:N(...))")
            n = self.expect("word", "the count N of repeat:N(...)")
            try:
                count = _int(1)(n.text)
            except ValueError as e:
                self.fail(f"repeat's count {e}", n.pos)
            self.expect("(", "'(' after repeat:N")
            body = self.seq()
            self.expect(")", "',' or ')' in repeat:N(...)")
            return Repeat(count, body, tok.pos)
        return self.layer()

    def layer(self):
        name = self.take()
        if name.text not in _KINDS:
            self.fail(f"unknown layer '{name.text}' (expected one of "
                      f"{', '.join(_KINDS)}, residual, repeat)", name.pos)
        defs, usage = _KINDS[name.text]
        values = {}  # argument name -> value
        where = {}   # argument name -> the offset where it was given
        npos, keyword_seen = 0, False
        while self.peek().kind == ":":
            self.take()
            first = self.expect("word", f"an argument after ':' (expected {usage})")
            if self.peek().kind == "=":
                self.take()
                val = self.expect("word", f"a value after '{first.text}=' (expected {usage})")
                arg = next((a for a in defs if a.name == first.text and a.keyword), None)
                if arg is None:
                    self.fail(f"{name.text}: unknown argument '{first.text}' (expected {usage})",
                              first.pos)
                keyword_seen = True
            elif any(a.bare and a.name == first.text for a in defs):
                arg = next(a for a in defs if a.bare and a.name == first.text)
                val = _Token("word", "1", first.pos)  # as C: neither positional nor key=value
            else:
                val = first
                if keyword_seen:
                    self.fail(f"{name.text}: a positional argument after a key=value one "
                              f"(expected {usage})", val.pos)
                positional = [a for a in defs if a.positional]
                if npos >= len(positional):
                    self.fail(f"{name.text}: too many arguments (expected {usage})", val.pos)
                arg = positional[npos]
                npos += 1
            if arg.name in values:
                self.fail(f"{name.text}: argument '{arg.name}' given twice", first.pos)
            try:
                values[arg.name] = arg.convert(val.text)
            except ValueError as e:
                self.fail(f"{name.text}: {arg.name} {e} (expected {usage})", val.pos)
            where[arg.name] = first.pos
        for a in defs:
            if a.name not in values:
                if a.default is _REQUIRED:
                    self.fail(f"{name.text}: missing {a.name} (expected {usage})", name.pos)
                values[a.name] = a.default
        if name.text in ("maxpool", "avgpool") and values["stride"] is None:
            values["stride"] = values["kernel"]
        if name.text == "dense" and values["tie"]:  # GPT-2's output projection has no bias
            if "bias" in where and values["bias"]:
                self.fail(f"{name.text}: a tied projection has no bias (expected {usage})",
                          where["bias"])
            values["bias"] = False
        last = self.toks[self.i - 1]
        return Layer(name.text, values, name.pos, self.spec[name.pos:last.pos + len(last.text)])


def parse(spec):
    """The spec as a tree: a list of Layer, Residual(f, g) and Repeat(n, body), every
    argument checked and its default filled in. Raises SpecError with the offset of the
    first thing wrong."""
    if not isinstance(spec, str):
        raise TypeError(f"spec must be a str, got {type(spec).__name__}")
    p = _Parser(spec)
    items = p.seq()
    tok = p.peek()
    if tok.kind != "end":
        p.fail(f"expected ',' or the end of the spec, got {_describe(tok)}", tok.pos)
    return items


# ---- the modules --------------------------------------------------------------------------------
# save/add/concat need the tensors saved so far, so the sequences pass a dict of them down to
# the items that take it (_Joins); every other layer is a plain torch module called as m(x).

class _Joins:
    """Marker: forward(x, saved) takes the dict of saved tensors too."""


class Seq(nn.Sequential, _Joins):
    """A sequence of items (children "0", "1", ...), run in order."""

    def forward(self, x, saved):
        for m in self:
            x = m(x, saved) if isinstance(m, _Joins) else m(x)
        return x


class ResidualBlock(nn.Module, _Joins):
    """residual(f | g): f(x) + g(x), or f(x) + x without g. f runs first."""

    def __init__(self, f, g):
        super().__init__()
        self.f = f
        self.g = g  # None is a plain attribute: no "g" in the module tree or the state_dict

    def forward(self, x, saved):
        y = self.f(x, saved)
        return y + (x if self.g is None else self.g(x, saved))


class Save(nn.Module, _Joins):
    """save:NAME: the identity, remembering x as NAME for the adds and concats after it."""

    def __init__(self, name):
        super().__init__()
        self.name = name

    def forward(self, x, saved):
        saved[self.name] = x
        return x

    def extra_repr(self):
        return self.name


class Add(Save):
    """add:NAME: x + the most recent save of NAME (same shape)."""

    def forward(self, x, saved):
        return x + saved[self.name]


class Concat(Save):
    """concat:NAME: torch.cat([x, saved NAME], dim=1), x's channels (or features) first."""

    def forward(self, x, saved):
        return torch.cat([x, saved[self.name]], dim=1)


class GlobalAvgPool(nn.Module):
    """gap: (B, C, H, W) -> (B, C), as nn.AdaptiveAvgPool2d(1) followed by nn.Flatten()."""

    def forward(self, x):
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)


# ---- the sequence layers (GPT-2's) ---------------------------------------------------------------

class Embedding(nn.Embedding):
    """embedding:VOCAB:DIM: nn.Embedding (its tensor "weight", (VOCAB, DIM)) on token ids
    given as floats holding integers, as shardprop's inputs are, or as integers."""

    def forward(self, ids):
        idx = ids.long()
        if ids.is_floating_point() and not torch.equal(idx.to(ids.dtype), ids):
            raise ValueError("embedding: token ids must be integers")
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= self.num_embeddings):
            raise ValueError(f"embedding: token ids must be in [0, {self.num_embeddings}), got "
                             f"[{int(idx.min())}, {int(idx.max())}]")
        return super().forward(idx)


class PosEmbedding(nn.Module):
    """pos_embedding: y = x + P[arange(t)] on (B, t, D), t <= T; its tensor "weight" is P
    (T, D) (GPT-2's wpe, indexed by position; initialized as GPT-2's, normal with std 0.02)."""

    def __init__(self, T, D):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(T, D))
        nn.init.normal_(self.weight, std=0.02)

    def forward(self, x):
        t = x.shape[-2]
        if t > self.weight.shape[0]:
            raise ValueError(f"pos_embedding: {t} positions, the model has {self.weight.shape[0]}")
        return x + self.weight[:t]

    def extra_repr(self):
        return f"{self.weight.shape[0]}, {self.weight.shape[1]}"


def causal_attention(q, k, v):
    """softmax(q k^T / sqrt(hs), causal) v on (B, H, T, hs): position i attends to j <= i.
    Written out (torch before 2.0 has no F.scaled_dot_product_attention; the two agree to
    rounding)."""
    T, hs = q.shape[-2], q.shape[-1]
    s = (q @ k.transpose(-2, -1)) / math.sqrt(hs)
    mask = torch.ones(T, T, dtype=torch.bool, device=q.device).tril()
    return torch.softmax(s.masked_fill(~mask, float("-inf")), dim=-1) @ v


class CausalSelfAttention(nn.Module):
    """attention:heads=H[:bias=0]: GPT-2's causal self-attention on (B, T, C). Submodules qkv
    = nn.Linear(C, 3C) and proj = nn.Linear(C, C); q, k, v = qkv(x).split(C), head h the
    columns [h C/H, (h+1) C/H) of each; the heads' outputs side by side, then proj."""

    def __init__(self, C, heads, bias=True):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(C, 3 * C, bias=bias)
        self.proj = nn.Linear(C, C, bias=bias)

    def forward(self, x):
        B, T, C = x.shape
        H = self.heads
        q, k, v = (t.view(B, T, H, C // H).transpose(1, 2) for t in self.qkv(x).split(C, dim=-1))
        y = causal_attention(q, k, v)
        return self.proj(y.transpose(1, 2).reshape(B, T, C))

    def extra_repr(self):
        return f"heads={self.heads}"


class TiedLinear(nn.Module):
    """dense:V:tie: nn.Linear(D, V, bias=False) whose weight IS the embedding's (V, D) weight.
    The embedding is held in a tuple, not as a submodule, so the tensor appears once in
    parameters() and in the state_dict (under the embedding's name), and autograd adds the
    blame of both uses into its one gradient."""

    def __init__(self, embedding, path):
        super().__init__()
        self._tied = (embedding,)
        self.tied_to = path

    @property
    def weight(self):
        return self._tied[0].weight

    def forward(self, x):
        return F.linear(x, self.weight)

    def extra_repr(self):
        v, d = self.weight.shape
        return f"in_features={d}, out_features={v}, bias=False, tied to {self.tied_to}"


class Graph(Seq):
    """The top-level sequence of a spec. forward(x) takes (B, *input_shape) and keeps the
    saved tensors of that call in a dict of its own, so calls never see each other's saves.
    A model whose first layer is an embedding (a language model, input_shape (T)) also takes
    (B, t) for t < T, the ids of a shorter context: for a causal model without flatten its
    output is the first t positions' of any longer input with the same start.

    Attributes: spec (the text), tree (parse(spec)), input_shape, output_shape (per sample),
    layers (module path -> the Layer node, for every layer, in execution order), tokens
    (whether the input is token ids)."""

    def __init__(self, modules, spec, tree, input_shape, output_shape, layers, tokens=False):
        super().__init__(*modules)
        self.spec, self.tree = spec, tree
        self.input_shape, self.output_shape = input_shape, output_shape
        self.layers = layers
        self.tokens = tokens

    def forward(self, x):
        shape = tuple(x.shape[1:])
        short = self.tokens and x.dim() == 2 and 1 <= shape[0] <= self.input_shape[0]
        if shape != self.input_shape and not short:
            raise ValueError(f"input of shape {tuple(x.shape)}: the model takes "
                             f"(B, {', '.join(map(str, self.input_shape))})")
        return Seq.forward(self, x, {})


def lm_loss(logits, targets):
    """A language model's loss as shardprop's: cross-entropy at every position of every
    sequence, the mean over the B*T tokens. logits (B, T, V), targets (B, T) ids."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1).long())


def _shape_str(shape):
    return "(" + ", ".join(str(d) for d in shape) + ")"


class _Builder:
    """Walks the tree in execution order with the sample shape, making each module and
    checking that it fits its input, as the C model's shape inference does."""

    def __init__(self, spec):
        self.spec = spec
        self.saved = {}   # name -> sample shape of its most recent save
        self.layers = {}  # path -> Layer
        self.embedding = None  # (module, path) of the first embedding: what tie ties to

    def fail(self, message, pos):
        raise SpecError(message, self.spec, pos)

    def seq(self, items, shape, prefix):
        mods = []
        for i, item in enumerate(items):
            m, shape = self.item(item, shape, f"{prefix}{i}")
            mods.append(m)
        return Seq(*mods), shape

    def item(self, item, shape, path):
        if isinstance(item, Residual):
            f, fs = self.seq(item.f, shape, f"{path}.f.")
            g, gs = (None, shape) if item.g is None else self.seq(item.g, shape, f"{path}.g.")
            if fs != gs:
                other = "x" if item.g is None else "g(x)"
                self.fail(f"residual at {path}: f(x) is {_shape_str(fs)} but {other} is "
                          f"{_shape_str(gs)}; the two must have the same shape", item.pos)
            return ResidualBlock(f, g), fs
        if isinstance(item, Repeat):
            copies = []
            for k in range(item.n):
                c, shape = self.seq(item.body, shape, f"{path}.{k}.")
                copies.append(c)
            return Seq(*copies), shape
        self.layers[path] = item
        return self.layer(item, shape, path)

    def layer(self, L, shape, path):
        a, kind = L.args, L.kind
        got = _shape_str(shape)

        def need(ok, what):
            if not ok:
                self.fail(f"layer {path} '{L.text}': needs {what}, but gets {got}", L.pos)

        if kind == "dense":  # on (F), or on every position of a sequence (T, D)
            need(len(shape) in (1, 2), "a flat input (F) or a sequence (T, D); add 'flatten' "
                                       "before it")
            out = shape[:-1] + (a["units"],)
            if not a["tie"]:
                return nn.Linear(shape[-1], a["units"], bias=a["bias"]), out
            if self.embedding is None:
                self.fail(f"layer {path} '{L.text}': tie needs an embedding before it "
                          f"(embedding:VOCAB:DIM)", L.pos)
            emb, epath = self.embedding
            if (emb.num_embeddings, emb.embedding_dim) != (a["units"], shape[-1]):
                self.fail(f"layer {path} '{L.text}': is tied to the embedding at layer {epath} "
                          f"of {emb.num_embeddings} x {emb.embedding_dim}, but its weight would "
                          f"be {a['units']} x {shape[-1]}", L.pos)
            return TiedLinear(emb, epath), out
        if kind == "embedding":
            need(len(shape) == 1, "token ids (T)")
            m = Embedding(a["vocab"], a["dim"])
            if self.embedding is None:
                self.embedding = (m, path)
            return m, (shape[0], a["dim"])
        if kind == "pos_embedding":
            need(len(shape) == 2, "a sequence (T, D) (after an embedding)")
            return PosEmbedding(*shape), shape
        if kind == "attention":
            need(len(shape) == 2, "a sequence (T, C) (after an embedding)")
            if shape[1] % a["heads"]:
                self.fail(f"layer {path} '{L.text}': {a['heads']} heads do not divide the "
                          f"width {shape[1]}", L.pos)
            return CausalSelfAttention(shape[1], a["heads"], bias=a["bias"]), shape
        if kind == "conv2d":
            k, s, p = a["kernel"], a["stride"], a["pad"]
            need(len(shape) == 3 and shape[1] + 2 * p >= k and shape[2] + 2 * p >= k,
                 "an image input (C, H, W) at least as large as the kernel")
            c, h, w = shape
            m = nn.Conv2d(c, a["out_channels"], k, stride=s, padding=p, bias=a["bias"])
            return m, (a["out_channels"], (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1)
        if kind in ("maxpool", "avgpool"):
            k, s = a["kernel"], a["stride"]
            need(len(shape) == 3 and shape[1] >= k and shape[2] >= k,
                 "an image input (C, H, W) at least as large as the window")
            cls = nn.MaxPool2d if kind == "maxpool" else nn.AvgPool2d
            c, h, w = shape
            return cls(k, stride=s), (c, (h - k) // s + 1, (w - k) // s + 1)
        if kind == "flatten":
            return nn.Flatten(), (int(np.prod(shape)),)
        simple = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}
        if kind in simple:
            return simple[kind](), shape
        if kind == "gelu":  # the exact (erf) form, or GPT-2's tanh approximation
            return nn.GELU(approximate=a["approximate"]), shape
        if kind == "leaky_relu":
            return nn.LeakyReLU(a["slope"]), shape
        if kind == "dropout":
            return nn.Dropout(a["p"]), shape
        if kind == "batchnorm":
            need(len(shape) != 2, "(F) or (C, H, W), not a sequence (use layernorm)")
            cls = nn.BatchNorm1d if len(shape) == 1 else nn.BatchNorm2d
            return cls(shape[0], eps=a["eps"], momentum=a["momentum"]), shape
        if kind == "layernorm":  # the whole sample, or each position of a sequence
            return nn.LayerNorm(shape[-1:] if len(shape) == 2 else shape, eps=a["eps"]), shape
        if kind == "gap":
            need(len(shape) == 3, "an image input (C, H, W)")
            return GlobalAvgPool(), (shape[0],)
        if kind == "upsample":
            need(len(shape) == 3, "an image input (C, H, W)")
            s = a["scale"]
            return nn.Upsample(scale_factor=s, mode="nearest"), (shape[0], shape[1] * s,
                                                                 shape[2] * s)
        if kind == "save":
            self.saved[a["name"]] = shape
            return Save(a["name"]), shape
        # add, concat
        name = a["name"]
        if name not in self.saved:
            self.fail(f"layer {path} '{L.text}': no 'save:{name}' runs before it", L.pos)
        other = self.saved[name]
        if kind == "add":
            if other != shape:
                self.fail(f"layer {path} '{L.text}': adds '{name}' {_shape_str(other)} to "
                          f"{got}; the shapes must be equal", L.pos)
            return Add(name), shape
        if len(shape) == 2:
            self.fail(f"layer {path} '{L.text}': concatenates sequences {_shape_str(other)} and "
                      f"{got}: not supported (use add)", L.pos)
        if len(other) != len(shape) or other[1:] != shape[1:]:
            self.fail(f"layer {path} '{L.text}': concatenates '{name}' {_shape_str(other)} "
                      f"to {got}; all but the first (channel) dimension must be equal", L.pos)
        return Concat(name), (shape[0] + other[0],) + shape[1:]


def build(spec, input_shape):
    """The spec as a Graph for samples of input_shape ((F) or (C, H, W); (T) token ids for a
    model that starts with an embedding), freshly initialized by PyTorch, in training mode. Its
    state_dict keys are exactly shardprop's names. Raises SpecError when the spec does not
    parse or a layer does not fit its input."""
    shape = tuple(int(d) for d in np.asarray(input_shape).reshape(-1))
    if len(shape) not in (1, 3) or min(shape) < 1:
        raise ValueError(f"input_shape must be (F) or (C, H, W) with every dimension >= 1, "
                         f"got {shape}")
    tree = parse(spec)
    b = _Builder(spec)
    top, out = b.seq(tree, shape, "")
    tokens = bool(len(top)) and isinstance(top[0], Embedding)
    return Graph(list(top), spec, tree, shape, out, b.layers, tokens)


# ---- names --------------------------------------------------------------------------------------

PARAMS = "/model/params"
_TENSORS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
_PATH = re.compile(r"\d+(\.(\d+|f|g))*(\.(qkv|proj))?")  # attention's two projections


def _check_path(path, tensor, what):
    if not _PATH.fullmatch(path) or tensor not in _TENSORS:
        raise ValueError(f"'{what}' is not a shardprop tensor name (a module path such as "
                         f"3.g.0 or 2.1.0.f.1.qkv, then one of {', '.join(_TENSORS)})")


def key_from_name(name):
    """A checkpoint dataset -> its state_dict key: "/model/params/3.g.0/weight" (or
    "3.g.0/weight") -> "3.g.0.weight"."""
    rel = name[len(PARAMS) + 1:] if name.startswith(PARAMS + "/") else name.lstrip("/")
    path, _, tensor = rel.rpartition("/")
    _check_path(path, tensor, name)
    return f"{path}.{tensor}"


def name_from_key(key, prefix=PARAMS):
    """A state_dict key -> its checkpoint dataset: "3.g.0.weight" -> "/model/params/3.g.0/weight"
    (prefix "" gives "3.g.0/weight"). Tensor names hold no '.', so the last '.' splits."""
    path, _, tensor = key.rpartition(".")
    _check_path(path, tensor, key)
    return f"{prefix}/{path}/{tensor}" if prefix else f"{path}/{tensor}"


# ---- checkpoints --------------------------------------------------------------------------------

def _text(v):
    """String attributes are fixed-length UTF-8: h5py gives bytes."""
    return v.decode("utf-8") if isinstance(v, (bytes, np.bytes_)) else v


def read_state(src):
    """The tensors under /model/params as a state dict {"3.g.0.weight": tensor, ...}. src is a
    file path, an open h5py.File, or the /model/params group. Each module is one group named
    by its dotted path; a nested group is refused rather than guessed at."""
    if isinstance(src, (str, os.PathLike)):
        with h5py.File(src, "r") as f:
            return read_state(f)
    g = src.get(PARAMS) if isinstance(src, h5py.File) else src
    state = {}
    if g is None:  # a model without parameters
        return state
    for path, grp in g.items():
        if not isinstance(grp, h5py.Group):
            raise ValueError(f"{grp.name}: expected a group per module under {PARAMS}")
        for tensor, ds in grp.items():
            if not isinstance(ds, h5py.Dataset):
                raise ValueError(f"{ds.name}: a group inside a module's group; module paths "
                                 f"are one group each, named with dots (e.g. {PARAMS}/3.g.0)")
            _check_path(path, tensor, ds.name)
            state[f"{path}.{tensor}"] = torch.from_numpy(np.asarray(ds[()]))
    return state


def _check_state(model, state, where):
    """Every tensor the model has, with its shape and dtype, and nothing else: what
    load_state_dict(strict=True) checks, plus the dtype it would convert silently, and named
    as the checkpoint names them."""
    want = model.state_dict()
    missing = [name_from_key(k) for k in want if k not in state]
    extra = [name_from_key(k) for k in state if k not in want]
    problems = []
    if missing:
        problems.append("missing " + ", ".join(missing))
    if extra:
        problems.append("not in the spec's model " + ", ".join(extra))
    for k, t in state.items():
        if k in want and (tuple(t.shape) != tuple(want[k].shape) or t.dtype != want[k].dtype):
            problems.append(f"{name_from_key(k)} is {t.dtype} {tuple(t.shape)}, the model's "
                            f"{want[k].dtype} {tuple(want[k].shape)}")
    if problems:
        raise ValueError(f"{where}: " + "; ".join(problems))


def load_checkpoint(path):
    """A shardprop checkpoint -> (Graph in eval mode, spec, input_shape): the model built from
    the file's /model attributes spec and input_shape, every parameter and buffer loaded from
    /model/params with strict=True. Raises ValueError naming any tensor missing, extra, or of
    the wrong shape or dtype."""
    with h5py.File(path, "r") as f:
        g = f["/model"]
        spec = _text(g.attrs["spec"])
        input_shape = tuple(int(d) for d in np.asarray(g.attrs["input_shape"]).reshape(-1))
        state = read_state(f)
    model = build(spec, input_shape)
    _check_state(model, state, path)
    model.load_state_dict(state, strict=True)
    return model.eval(), spec, input_shape


def save_state(module, dest, spec=None, input_shape=None):
    """Write a module's state_dict in shardprop's layout, as the C writer does: one group per
    module under /model/params (group attribute layer = the kind, when known), float32 tensors,
    num_batches_tracked an int64 scalar. dest is a path (a new file), an h5py.File (/model is
    created in it, with the attributes spec and input_shape, taken from a Graph when not
    given), or an h5py group, which receives the module groups themselves. For tests: a
    checkpoint the C side reads also needs /model's loss and format_version, and /optimizer."""
    if isinstance(dest, (str, os.PathLike)):
        with h5py.File(dest, "w") as f:
            return save_state(module, f, spec, input_shape)
    layers = getattr(module, "layers", {})
    if isinstance(dest, h5py.File):
        spec = spec if spec is not None else getattr(module, "spec", None)
        input_shape = input_shape if input_shape is not None else getattr(module, "input_shape",
                                                                          None)
        if spec is None or input_shape is None:
            raise ValueError("save_state: spec and input_shape are needed for a file")
        m = dest.require_group("/model")
        m.attrs["spec"] = np.bytes_(spec.encode("utf-8"))  # fixed-length, as shardprop writes
        m.attrs["input_shape"] = np.asarray(input_shape, dtype=np.int64)
        dest = dest.require_group(PARAMS)
    for key, t in module.state_dict().items():
        name = name_from_key(key, prefix="")
        path = name.rpartition("/")[0]
        grp = dest.require_group(path)
        # attention's projections are dense layers in shardprop (P.qkv, P.proj)
        parent, _, part = path.rpartition(".")
        kind = (layers[path].kind if path in layers else
                "dense" if part in ("qkv", "proj") and parent in layers else None)
        if kind is not None and "layer" not in grp.attrs:
            grp.attrs["layer"] = np.bytes_(kind.encode("utf-8"))
        grp.create_dataset(name.rpartition("/")[2], data=t.detach().cpu().numpy())
