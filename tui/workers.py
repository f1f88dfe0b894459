"""Routing of worker failures to the one place that reports errors (`NexusApp.report_error`).

Worker state messages do not bubble, so every node that runs workers mixes this in; the
worker itself just raises, and the person sees one line, never a traceback.
"""

from __future__ import annotations

from textual.worker import Worker, WorkerState


class WorkerErrors:
    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state == WorkerState.ERROR and event.worker.error is not None:
            project_id = getattr(self, "project_id", None)
            self.app.report_error(  # type: ignore[attr-defined]
                event.worker.error, project_id=project_id, what=event.worker.description
            )
