"""Describe a plugin's options (from its pydantic model) for `livewatch plugins` and the README."""
from __future__ import annotations

import types
from typing import Annotated, Literal, Union, get_args, get_origin

from pydantic import BaseModel


def _type_name(annotation) -> str:
    if get_origin(annotation) is Literal:
        return " or ".join(repr(a) for a in get_args(annotation))
    if get_origin(annotation) in (Union, types.UnionType) and type(None) not in get_args(annotation):
        # e.g. Literal["center", "cover"] | PositiveInt (`X | None` reads well as it is)
        return " or ".join(_type_name(a) for a in get_args(annotation))
    if get_origin(annotation) is Annotated:  # PositiveInt and the like: the type, not its checks
        return _type_name(get_args(annotation)[0])
    text = getattr(annotation, "__name__", None) or str(annotation)
    return text.replace("typing.", "").replace("pathlib.", "").replace(" | ", " or ")


def describe_options(model: type[BaseModel]) -> list[dict]:
    out = []
    for name, field in model.model_fields.items():
        required = field.is_required()
        default = None if required else field.get_default(call_default_factory=True)
        if default is not None and not isinstance(default, (str, int, float, bool, list, dict)):
            default = str(default)
        out.append({
            "name": name,
            "type": _type_name(field.annotation),
            "required": required,
            "default": default,
            "description": field.description or "",
        })
    return out


START, END = "<!-- config-reference:start -->", "<!-- config-reference:end -->"


def config_reference() -> str:
    """The README's configuration reference, generated from the settings and plugin models."""
    from .plugins import Registry, make_plugin_manager
    from .events import EventSettings
    from .settings import DaemonSettings, UiSettings

    def table(options: list[dict]) -> list[str]:
        rows = ["| option | type | default | meaning |", "|---|---|---|---|"]
        for o in options:
            default = "*required*" if o["required"] else f"`{o['default']!r}`"
            rows.append(f"| `{o['name']}` | {o['type']} | {default} | {o['description']} |")
        return rows

    lines = [START, "", "#### `[daemon]`", "", *table(describe_options(DaemonSettings))]
    lines += ["", "#### `[ui]`", "", *table(describe_options(UiSettings))]
    lines += ["", "#### `[events]`", "", "How windows become activity events (`livewatch events`).", ""]
    lines += table(describe_options(EventSettings))
    registry = Registry(make_plugin_manager(load_entry_points=False))
    for kind, section in (("source", "[[sources]]"), ("classifier", "[classifier]"), ("sink", "[[sinks]]")):
        for entry in registry.of_kind(kind):
            lines += ["", f"#### `{section}` type = \"{entry.name}\"", "", entry.summary, ""]
            lines += table(describe_options(entry.cls.Options))
    for entry in registry.of_kind("backend"):  # the i3d classifier's backend_options table
        own = [o for o in describe_options(entry.cls.Options) if o["name"] not in ("device", "threads")]
        lines += ["", f"#### `[classifier.backend_options]` backend = \"{entry.name}\"", "", entry.summary, ""]
        lines += table(own) if own else ["No options of its own."]
    return "\n".join([*lines, "", END])


def update_readme(path: str = "README.md") -> bool:
    """Rewrite the reference between the markers; returns True if the file changed."""
    with open(path) as f:
        text = f.read()
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    new = head + config_reference() + tail
    if new != text:
        with open(path, "w") as f:
            f.write(new)
    return new != text


if __name__ == "__main__":  # python -m livewatch.plugin_docs  (refreshes README.md)
    print("README.md updated" if update_readme() else "README.md already up to date")
