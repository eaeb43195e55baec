"""Prometheus metrics in the text exposition format (version 0.0.4), written out without a client library.

    favor_requests_total{route,method,status}          counter    every HTTP request
    favor_request_errors_total{route,status}           counter    requests answered 4xx or 5xx
    favor_request_duration_seconds{route}              histogram  time from request to response
    favor_batch_rows / favor_batch_requests            histogram  sequences / requests per micro-batch
    favor_forward_rows                                 histogram  rows per forward pass
    favor_forward_seconds                              histogram  time of one forward pass
    favor_queue_pending                                gauge      jobs waiting for the worker
    favor_model_info{backbone,task,...}                gauge      1, labels describe the loaded model
    favor_input_residues                               histogram  residues per input sequence
    favor_input_residue_total{residue}                 counter    residues received by letter
    favor_input_log_likelihood                         histogram  mean log p per residue of an input (MLM)

Routes outside the application's own paths are counted as ``route="other"``, and HTTP methods other than
the standard ones as ``method="other"``, so arbitrary requests cannot grow the label set. All updates take
one lock: they come from the event loop and from the worker thread.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Callable, Sequence

__all__ = ["Histogram", "Metrics", "CONTENT_TYPE"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
LENGTH_BUCKETS = (16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192)
# Natural-log probability per residue: uniform over 20 residues is -3.0; a trained protein LM scores about
# -2.4 to -2.6 on natural proteins.
LIKELIHOOD_BUCKETS = (-4.0, -3.5, -3.25, -3.0, -2.9, -2.8, -2.7, -2.6, -2.5, -2.4, -2.2, -2.0, -1.5)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(pairs: Sequence[tuple[str, str]]) -> str:
    if not pairs:
        return ""
    return "{" + ",".join(f'{k}="{_escape(str(v))}"' for k, v in pairs) + "}"


def _number(value: float) -> str:
    if value == float("inf"):
        return "+Inf"
    return repr(float(value)) if isinstance(value, float) else str(value)


class Histogram:
    """Cumulative-bucket histogram with one series per label tuple."""

    def __init__(
        self, name: str, help_text: str, label_names: tuple[str, ...], buckets: Sequence[float]
    ) -> None:
        self.name, self.help, self.label_names = name, help_text, label_names
        self.buckets = tuple(sorted(buckets))
        self.series: dict[tuple[str, ...], tuple[list[int], list[float]]] = {}
        if not label_names:
            # An unlabelled histogram exists (at zero) from the start, as Prometheus clients expect.
            self.series[()] = ([0] * (len(self.buckets) + 1), [0.0])

    def observe(self, value: float, labels: tuple[str, ...] = ()) -> None:
        counts, total = self.series.setdefault(labels, ([0] * (len(self.buckets) + 1), [0.0]))
        counts[bisect.bisect_left(self.buckets, value)] += 1
        total[0] += value

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} histogram"]
        for labels, (counts, total) in sorted(self.series.items()):
            pairs = list(zip(self.label_names, labels, strict=True))
            running = 0
            for bound, count in zip((*self.buckets, float("inf")), counts, strict=True):
                running += count
                lines.append(
                    f"{self.name}_bucket{_labels([*pairs, ('le', _number(float(bound)))])} {running}"
                )
            lines.append(f"{self.name}_sum{_labels(pairs)} {_number(total[0])}")
            lines.append(f"{self.name}_count{_labels(pairs)} {running}")
        return lines


class Metrics:
    """Every metric of the server; `render` gives the exposition text."""

    def __init__(self, *, model_info: dict[str, str] | None = None) -> None:
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, str, str], int] = {}
        self.errors: dict[tuple[str, str], int] = {}
        self.latency = Histogram(
            "favor_request_duration_seconds", "Time from request to response.", ("route",), LATENCY_BUCKETS
        )
        self.batch_rows = Histogram("favor_batch_rows", "Sequences (rows) per micro-batch.", (), SIZE_BUCKETS)
        self.batch_requests = Histogram("favor_batch_requests", "Requests per micro-batch.", (), SIZE_BUCKETS)
        self.forward_rows = Histogram("favor_forward_rows", "Rows per forward pass.", (), SIZE_BUCKETS)
        self.forward_seconds = Histogram(
            "favor_forward_seconds", "Time of one forward pass.", (), LATENCY_BUCKETS
        )
        # Drift monitoring: what clients send, against what the model was trained on.
        self.input_residues = Histogram(
            "favor_input_residues", "Residues per input sequence.", (), LENGTH_BUCKETS
        )
        self.input_log_likelihood = Histogram(
            "favor_input_log_likelihood",
            "Mean log-probability per residue of an input under the model, every 8th residue masked "
            "(masked LMs; a drop means inputs unlike the training data).",
            (),
            LIKELIHOOD_BUCKETS,
        )
        self.composition: dict[str, int] = {}
        self.model_info = model_info or {}
        # Read at render time (the batcher's queue length).
        self.pending: Callable[[], int] = lambda: 0

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        with self._lock:
            key = (route, method, str(status))
            self.requests[key] = self.requests.get(key, 0) + 1
            if status >= 400:
                error_key = (route, str(status))
                self.errors[error_key] = self.errors.get(error_key, 0) + 1
            self.latency.observe(seconds, (route,))

    def observe_inputs(self, sequences: list[str], letters: frozenset[str]) -> None:
        """Lengths and residue composition of a request's sequences (labels: ``letters`` or ``other``)."""
        with self._lock:
            for sequence in sequences:
                self.input_residues.observe(len(sequence))
                for letter in sequence.upper():
                    key = letter if letter in letters else "other"
                    self.composition[key] = self.composition.get(key, 0) + 1

    def observe_likelihood(self, mean_log_prob: float) -> None:
        with self._lock:
            self.input_log_likelihood.observe(mean_log_prob)

    def observe_batch(self, requests: int, rows: int) -> None:
        with self._lock:
            self.batch_requests.observe(requests)
            self.batch_rows.observe(rows)

    def observe_forward(self, rows: int, tokens: int, seconds: float) -> None:
        with self._lock:
            self.forward_rows.observe(rows)
            self.forward_seconds.observe(seconds)

    def render(self) -> str:
        with self._lock:
            lines = [
                "# HELP favor_requests_total HTTP requests by route, method and status.",
                "# TYPE favor_requests_total counter",
            ]
            for (route, method, status), count in sorted(self.requests.items()):
                pairs = [("route", route), ("method", method), ("status", status)]
                lines.append(f"favor_requests_total{_labels(pairs)} {count}")
            lines += [
                "# HELP favor_request_errors_total Requests answered with a 4xx or 5xx status.",
                "# TYPE favor_request_errors_total counter",
            ]
            for (route, status), count in sorted(self.errors.items()):
                lines.append(
                    f"favor_request_errors_total{_labels([('route', route), ('status', status)])} {count}"
                )
            for histogram in (
                self.latency,
                self.batch_rows,
                self.batch_requests,
                self.forward_rows,
                self.forward_seconds,
                self.input_residues,
                self.input_log_likelihood,
            ):
                lines += histogram.render()
            lines += [
                "# HELP favor_input_residue_total Residues received, by letter (closed set; others: other).",
                "# TYPE favor_input_residue_total counter",
            ]
            for letter, count in sorted(self.composition.items()):
                lines.append(f"favor_input_residue_total{_labels([('residue', letter)])} {count}")
            lines += [
                "# HELP favor_queue_pending Jobs waiting for the inference worker.",
                "# TYPE favor_queue_pending gauge",
                f"favor_queue_pending {self.pending()}",
            ]
            if self.model_info:
                lines += [
                    "# HELP favor_model_info The loaded model (value 1).",
                    "# TYPE favor_model_info gauge",
                    f"favor_model_info{_labels(sorted(self.model_info.items()))} 1",
                ]
        return "\n".join(lines) + "\n"
