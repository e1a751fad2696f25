"""Admin notices as DingTalk robot messages: one call for up to 20 admins, rendered by `cards`."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from approvals.ports import Notice
from bot.openapi import DingTalkClient
from cards.renderer import Renderer

log = logging.getLogger(__name__)

TITLES = {
    "submit_failed": "审批未能发起 / approval not raised",
    "write_back_failed": "回写ERP失败 / write-back failed",
    "stale": "单据已在ERP中变更 / document changed in the ERP",
    "withdrawn": "审批已撤回 / approval withdrawn",
    "terminate_failed": "审批实例未能终止 / instance not terminated",
}


class DingTalkNotifier:
    """Sends notices to the configured admins as robot one-to-one Markdown messages."""

    def __init__(self, client: DingTalkClient, admins: Sequence[str], renderer: Renderer) -> None:
        self._client = client
        self._admins = list(admins)
        self._renderer = renderer

    async def notify(self, notice: Notice) -> None:
        """Deliver one notice (the client batches 20 recipients a call); no admins, no call."""
        if not self._admins:
            log.warning("notice not sent, no dingtalk.admins configured: %s", notice.text)
            return
        title = TITLES.get(notice.kind, notice.kind)
        text = self._renderer.render(
            "chat/notice.md.j2",
            title=title,
            text=notice.text,
            doc_no=notice.doc_no,
            approval_id=notice.approval_id,
        )
        result = await self._client.send_robot_oto(
            self._admins, "sampleMarkdown", {"title": title, "text": text}
        )
        if result.invalid:
            log.warning("dingtalk.admins not reachable by the robot: %s", ", ".join(result.invalid))
