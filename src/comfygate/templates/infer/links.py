"""The links of a UI-format workflow: ``[id, from_node, from_slot, to_node, to_slot, type]``
lists, or objects (``origin_id``, ``origin_slot``...) as subgraphs and newer saves hold them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from comfygate.templates.infer.formats import TemplateImportError


@dataclass(frozen=True)
class Link:
    origin: str
    slot: int
    type: Any
    target: str = ""
    target_slot: int = -1


def parse_links(raw: Any) -> dict[Any, Link]:
    if not isinstance(raw, list):
        raise TemplateImportError("UI-format workflow: 'links' must be a list")
    links: dict[Any, Link] = {}
    for entry in raw:
        if isinstance(entry, list) and len(entry) >= 5:
            link_id, origin, slot, target, target_slot = entry[:5]
            link_type = entry[5] if len(entry) > 5 else None
        elif isinstance(entry, dict) and {"id", "origin_id", "origin_slot"} <= entry.keys():
            link_id, origin, slot = entry["id"], entry["origin_id"], entry["origin_slot"]
            target, target_slot = entry.get("target_id"), entry.get("target_slot")
            link_type = entry.get("type")
        else:
            raise TemplateImportError(
                f"UI-format workflow: link {entry!r} is neither "
                "[id, from_node, from_slot, to_node, to_slot, type] nor an object"
            )
        if not isinstance(slot, int) or isinstance(slot, bool):
            raise TemplateImportError(f"UI-format workflow: link {link_id!r} has no output slot")
        links[link_id] = Link(
            str(origin),
            slot,
            link_type,
            str(target),
            target_slot if isinstance(target_slot, int) else -1,
        )
    return links
