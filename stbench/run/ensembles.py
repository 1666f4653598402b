"""Which variants of a method can be trained as one batched ensemble: the rule a method declares, applied.

A method folder that can train several of its variants as one model (``methods/stmcdi/ensemble.py``) says
in its ``method.yaml`` which parameters its members may differ in and which values every member needs::

    ensemble:
      may_differ_in: [train_mask_strategy, train_mask_ratio, or_mask, lr_mask]
      requires: {encoder: gcn, generator: diffusion, enc_dropout: 0.0, target: values}
      needs_nonzero: [checkpoints]   # a variant's own job reads the ensemble's checkpoint only then

The rule is data, and this module (no torch, no method code) is its one implementation: the workflow
groups a config's variants with it at parse time, and the method's own ensemble code refuses with it what
it cannot batch. Groups are per method; a group of one variant is no ensemble.
"""

from __future__ import annotations

from stbench.errors import ConfigError

RULE_KEYS = {"may_differ_in", "requires", "needs_nonzero"}


def check_rule(rule, where: str) -> dict:
    """The ``ensemble`` block of a method.yaml, validated (``where`` names the file in errors)."""
    if not isinstance(rule, dict) or set(rule) - RULE_KEYS or "may_differ_in" not in rule:
        raise ConfigError(f"{where}: 'ensemble' must be a mapping with may_differ_in (and optionally requires, "
                          f"needs_nonzero); got {rule!r}")
    if not isinstance(rule["may_differ_in"], list) or not isinstance(rule.get("requires") or {}, dict) \
            or not isinstance(rule.get("needs_nonzero") or [], list):
        raise ConfigError(f"{where}: ensemble.may_differ_in and needs_nonzero must be lists, requires a mapping")
    return rule


def why_not(rule: dict, p: dict, *, workflow: bool = True) -> str | None:
    """None if a variant with the resolved parameters ``p`` can be a member, else the reason. ``workflow``: also
    ``needs_nonzero`` (what the variant's own job needs to find the ensemble's result); without it, only what
    the method can batch (``requires``)."""
    for k, want in (rule.get("requires") or {}).items():
        if p.get(k) != want:
            return f"{k}={p.get(k)!r} (an ensemble member needs {want!r})"
    for k in (rule.get("needs_nonzero") or []) if workflow else []:
        if not p.get(k):
            return f"{k}={p.get(k)!r} (an ensemble member of the workflow needs it nonzero)"
    return None


def shared_key(rule: dict, p: dict) -> tuple:
    """Members of one ensemble share this key: every parameter except those they may differ in."""
    free = set(rule["may_differ_in"])
    return tuple(sorted((k, repr(v)) for k, v in p.items() if k not in free))


def groups(rule: dict, variants: dict[str, dict]) -> list[list[str]]:
    """The variants (name -> resolved params, in config order) that can be trained together: groups of two or
    more, each in config order, ordered by their first member."""
    by: dict[tuple, list[str]] = {}
    for name, p in variants.items():
        if why_not(rule, p) is None:
            by.setdefault(shared_key(rule, p), []).append(name)
    return [names for names in by.values() if len(names) > 1]
