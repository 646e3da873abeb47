"""Alert hooks: ``exec`` and ``webhook`` on incident open / close / vmcore-linked, and the fleet rule.

Wiring (sylog/server/app.py)::

    alerts = AlertDispatcher.from_config(cfg)
    engine.listeners.append(alerts.on_incident)   # (event, Incident) after the incident is on disk
    ...
    await engine.aclose(); await alerts.aclose()  # close events of the shutdown still go out
"""

from sylog.alerts.config import AlertConfig
from sylog.alerts.dispatcher import AlertDispatcher, DeliveryFailed, ExecHook, WebhookHook
from sylog.alerts.fleet import FleetRule

__all__ = ["AlertConfig", "AlertDispatcher", "DeliveryFailed", "ExecHook", "FleetRule", "WebhookHook"]
