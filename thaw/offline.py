"""Keep every run off the network: telemetry off, hubs offline, bundled suffix list.

``apply_offline_environment`` is called by the CLI and the flow entry point, never on
import. It only sets variables the user has not set themselves.
"""

from __future__ import annotations

import os

OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "DO_NOT_TRACK": "1",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",  # a bar per download buries the run's log
    # the MLflow servers thaw starts (`thaw ui`, `thaw up`, the tests') run no server-side
    # jobs (a GenAI feature); their consumer processes would outlive the server
    "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    "DVC_NO_ANALYTICS": "1",
    "DVC_NO_UPDATER": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    # thaw's own log records (its packages' loggers) reach the Prefect run's logs; outside
    # a run (a CLI command, a training subprocess) they stay local, without a warning
    "PREFECT_LOGGING_EXTRA_LOGGERS": "thaw,tasks,flows",
    "PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW": "ignore",
    # ONNX Runtime's telemetry SDK (Microsoft 1DS; its collector is
    # mobile.events.data.microsoft.com) starts when the library loads, and writes a session
    # file (.ses) in the temporary directory; read at load, so set before the import
    "ORT_DISABLE_TELEMETRY": "1",
    "GX_ANALYTICS_ENABLED": "False",
    "GE_USAGE_STATISTICS_URL": "",
    # tldextract (Presidio's email recognizer) reads this when it is imported: an empty
    # list of URLs means "use the snapshot bundled in the wheel", no download.
    "TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS": "",
}


def apply_offline_environment() -> None:
    """Set the offline/no-telemetry variables that are not already set."""
    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)


def use_bundled_public_suffix_list() -> None:
    """Point tldextract's module-level extractor at its bundled snapshot.

    Needed when tldextract was imported before the environment was set.
    """
    import tldextract
    import tldextract.tldextract as impl

    impl.TLD_EXTRACTOR = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)


# What a server or serving process thaw starts may inherit: the basics a process needs,
# and the configuration of the tools it runs. Nothing else: no PII key, no tracking
# password or token, no cloud credentials (a registrant's code is never run, but a
# server's environment is still nobody's business but its own).
PASSED_NAMES = frozenset(
    {
        "PATH", "HOME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "TERM", "USER", "LOGNAME", "VIRTUAL_ENV",
        "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "PYTHONPATH",
        "DO_NOT_TRACK",
    }
)  # fmt: skip
PASSED_PREFIXES = (
    "LC_", "PREFECT_", "MLFLOW_", "HF_", "TRANSFORMERS_", "TOKENIZERS_", "DVC_", "GX_", "GE_", "ORT_",
    "TLDEXTRACT_", "OMP_", "MKL_", "OPENBLAS_",
)  # fmt: skip
SECRET_NAMES = frozenset(
    {
        "THAW_PII_SECRET", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_CLIENT_CERT_PATH",
        "MLFLOW_FLASK_SERVER_SECRET_KEY", "PREFECT_API_KEY", "PREFECT_API_AUTH_STRING",
        "PREFECT_SERVER_API_AUTH_STRING", "THAW_SIGNING_KEY", "THAW_SIGNING_KEY_PASSPHRASE",
    }
)  # fmt: skip


def service_environment(secret_names: tuple[str, ...] = (), **extra: str) -> dict[str, str]:
    """The explicit environment of a server or serving process thaw starts: the passed-on
    basics and tool settings of this process (offline settings included), plus ``extra``,
    without any of ``SECRET_NAMES`` or ``secret_names`` (e.g. a configured PII key name)."""
    env = {k: v for k, v in os.environ.items() if k in PASSED_NAMES or k.startswith(PASSED_PREFIXES)}
    env.update({k: os.environ.get(k, v) for k, v in OFFLINE_ENV.items()})
    env.update(extra)
    for name in (*SECRET_NAMES, *secret_names):
        env.pop(name, None)
    return env
