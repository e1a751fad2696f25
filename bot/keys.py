"""Typed application keys: how handlers reach the services `create_app` built."""

from __future__ import annotations

import aiohttp
from aiohttp import web

from approvals.db.engine import Database
from approvals.decisions import DecisionService
from approvals.intake import IntakeService
from approvals.jobs import JobRunner
from approvals.reconcile import Reconciler
from bot.events import EventSink
from bot.meter import CallMeter
from bot.openapi import DingTalkClient
from bot.stream import StreamIntake
from erp_adapter.native.poller import Poller
from erp_adapter.webhooks import ErpWebhook

DATABASE = web.AppKey("database", Database)
HTTP_SESSION = web.AppKey("http_session", aiohttp.ClientSession)
INTAKE = web.AppKey("intake", IntakeService)
WEBHOOK = web.AppKey("erp_webhook", ErpWebhook)
JOBS = web.AppKey("jobs", JobRunner)
DECISIONS = web.AppKey("decisions", DecisionService)
SINK = web.AppKey("event_sink", EventSink)
STREAM = web.AppKey("stream", StreamIntake)
METER = web.AppKey("meter", CallMeter)
RECONCILER = web.AppKey("reconciler", Reconciler)
CLIENT = web.AppKey("dingtalk_client", DingTalkClient)
POLLER = web.AppKey("erp_poller", Poller)
