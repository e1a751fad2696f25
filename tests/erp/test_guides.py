"""Every key of each native adapter's section is documented in its setup guide."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel

from erp_adapter.erpnext.config import ErpnextConfig
from erp_adapter.kingdee.config import KingdeeConfig
from erp_adapter.odoo.config import OdooConfig

DOCS = Path(__file__).resolve().parents[2] / "docs"


@pytest.mark.parametrize(
    ("guide", "model"),
    [("kingdee.md", KingdeeConfig), ("odoo.md", OdooConfig), ("erpnext.md", ErpnextConfig)],
)
def test_every_key_is_in_the_guide(guide: str, model: type[BaseModel]) -> None:
    text = (DOCS / "erp" / guide).read_text(encoding="utf-8")
    section = guide.removesuffix(".md").upper()

    def documented(key: str) -> bool:
        # A secret is documented by the environment variable it must come from.
        env = f"APPROVAL_BRIDGE__ERP__{section}__{key.upper()}"
        return f"`{key}`" in text or f"{key} =" in text or env in text

    assert [key for key in model.model_fields if not documented(key)] == []


def test_the_readme_links_each_guide() -> None:
    readme = (DOCS.parent / "README.md").read_text(encoding="utf-8")
    assert all(f"docs/erp/{name}.md" in readme for name in ("kingdee", "odoo", "erpnext"))
