"""`make dev`: run relay locally on workerd at http://127.0.0.1:8787 with local D1.

With a `.dev.vars` (copy `.dev.vars.example`), relay talks to the real providers with
your keys. Without one it starts in demo mode: the project's fake Anthropic and OpenAI
upstreams run next to the Worker, the relay key is `relay-demo-key` and the admin token (for
the key CLI and the usage page at /admin/) is `relay-demo-admin`.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from devtools import runtime  # noqa: E402
from devtools.fake_upstream import FakeUpstream  # noqa: E402
from devtools.local_worker import DATABASE, WRANGLER  # noqa: E402

PORT = 8787
DEMO_KEY = "relay-demo-key"
DEMO_ADMIN_TOKEN = "relay-demo-admin"


def main() -> int:
    env = runtime.env()
    # The deployable wrangler.toml as it is, plus the flags of the local Pyodide bundle.
    flags = ["--compatibility-flags", *runtime.compatibility_flags((ROOT / "wrangler.toml").read_text())]
    extra: list[str] = []
    fakes: list[FakeUpstream] = []
    if not (ROOT / ".dev.vars").exists():
        fakes = [FakeUpstream("anthropic").start(), FakeUpstream("openai").start()]
        demo = {
            "RELAY_CLIENT_KEYS": DEMO_KEY,
            "RELAY_ADMIN_TOKEN": DEMO_ADMIN_TOKEN,
            "ANTHROPIC_API_KEYS": "demo-upstream-key",
            "OPENAI_API_KEYS": "demo-upstream-key",
            "UPSTREAM_ANTHROPIC_URL": fakes[0].url,
            "UPSTREAM_OPENAI_URL": fakes[1].url,
        }
        extra = [arg for name, value in demo.items() for arg in ("--var", f"{name}:{value}")]
        print(
            f"""
relay demo mode (no .dev.vars): fake upstreams at {fakes[0].url} and {fakes[1].url}
  export ANTHROPIC_BASE_URL=http://127.0.0.1:{PORT} ANTHROPIC_API_KEY={DEMO_KEY}
  export OPENAI_BASE_URL=http://127.0.0.1:{PORT}/openai/v1 OPENAI_API_KEY={DEMO_KEY}
  usage page: http://127.0.0.1:{PORT}/admin/ (admin token {DEMO_ADMIN_TOKEN})
""",
            flush=True,
        )
    subprocess.run(
        [str(WRANGLER), "d1", "migrations", "apply", DATABASE, "--local"],
        cwd=ROOT,
        env={**env, "CI": "true"},
        check=True,
        stdin=subprocess.DEVNULL,
    )
    try:
        return subprocess.call(
            [str(WRANGLER), "dev", "--ip", "127.0.0.1", "--port", str(PORT), *flags, *extra], cwd=ROOT, env=env
        )
    except KeyboardInterrupt:
        return 0
    finally:
        for fake in fakes:
            fake.stop()


if __name__ == "__main__":
    sys.exit(main())
