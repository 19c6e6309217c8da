"""What ``--validate-config`` and ``providers check`` look at beyond the config file itself.

The file is checked by the settings models at load time; these checks need the environment
(API keys, the optional local model, fallback pool files) or the network (probing providers).
The summary is what an operator reads before starting the bot: secrets are never in it.
"""

from __future__ import annotations

from kryten_llm.config import Settings, redacted
from kryten_llm.console import EXIT_FAILED, EXIT_OK, table
from kryten_llm.errors import ConfigError
from kryten_llm.pipeline.fallback import FallbackPools


def startup_problems(settings: Settings) -> list[tuple[str, str, str]]:
    """Checks that need the environment, not just the file: missing API keys.

    Only providers the bot will call (the default and the fallbacks) are checked; a spare
    provider without its key is shown as "no key" by the summary instead.
    """
    problems = []
    in_use = set(settings.llm.chain)
    for name, provider in settings.llm.providers.items():
        if name in in_use and provider.type == "local":
            from kryten_llm.llm.local import local_problems  # only a local model pays for it

            problems += [
                (f"llm.providers.{name}", "the local model cannot run", fix)
                for fix in local_problems(provider)
            ]
        if name in in_use and provider.api_key_env and provider.resolve_api_key() is None:
            problems.append(
                (
                    f"llm.providers.{name}.api_key_env",
                    f"environment variable {provider.api_key_env} is not set",
                    f"export {provider.api_key_env}=<your key> (or put it in the "
                    "EnvironmentFile of llm.service)",
                )
            )
    try:
        FallbackPools.from_settings(settings)
    except ConfigError as exc:
        problems += exc.problems
    if settings.memory.enabled:  # memory (issue 14): a broken store stops the start, named
        from kryten_llm.memory.checks import memory_problems

        problems += memory_problems(settings)
    return problems


async def check_providers(settings: Settings, per_provider_seconds: float) -> int:
    """Probe every configured provider, print one line each; 0 when all are ready."""
    import aiohttp

    from kryten_llm.llm.manager import build_manager  # only this command needs the providers

    async with aiohttp.ClientSession() as session:
        results = await build_manager(settings.llm, session).probe_all(per_provider_seconds)
    chain = settings.llm.chain
    rows = [("provider", "type", "model", "status", "ms", "detail")]
    for r in results:
        role = " (default)" if r.name == chain[0] else " (fallback)" if r.name in chain else ""
        rows.append(
            (
                r.name + role,
                settings.llm.providers[r.name].type,
                r.model,
                "ready" if r.ok else "FAILED",
                f"{r.latency_ms:.0f}",
                r.detail,
            )
        )
    for line in table(rows, last_free=True):
        print(line)
    return EXIT_OK if all(r.ok for r in results) else EXIT_FAILED


def summary(settings: Settings) -> list[str]:
    """A short, secret-free description of what the bot will do."""
    data = redacted(settings)
    lines = ["configuration OK"]
    lines.append("  nats:       " + ", ".join(data["nats"]["servers"]))
    for channel in settings.channels:
        character = settings.for_channel(channel)
        own = [s for s in ("triggers", "ratelimit", "formatting") if getattr(channel, s)]
        lines.append(
            f"  channel:    {channel.channel} on {channel.domain} as "
            f"{character.personality.character_name} ({character.active_personality}"
            + (f"; own {', '.join(own)})" if own else ")")
        )
    lines.append(f"  bot:        {settings.bot.username} as {settings.personality.character_name}")
    chain = settings.llm.chain
    for name, provider in data["llm"]["providers"].items():
        default = " (default)" if name == chain[0] else " (fallback)" if name in chain else ""
        key = "key set" if provider["api_key"] else "no key"
        where = {
            "openai": provider["base_url"],
            "anthropic": provider["base_url"],
            "local": provider["model_path"] or "SmolLM2",
        }.get(provider["type"], "in-process")
        lines.append(
            f"  provider:   {name}{default}: {provider['type']} {provider['model']} "
            f"at {where}, {key}"
        )
    words = ", ".join(w.name for w in settings.triggers.words) or "none"
    lines.append(
        f"  triggers:   mentions={'on' if settings.triggers.mentions else 'off'}, words: {words}"
    )
    rl = settings.ratelimit
    lines.append(
        f"  ratelimit:  {rl.global_per_minute}/min, {rl.global_per_hour}/h overall; "
        f"{rl.user_per_hour}/h and {rl.user_cooldown_seconds:g}s cooldown per user"
    )
    log_dir = settings.logging.response_log_dir if settings.logging.response_log else "off"
    lines.append(f"  logs:       level {settings.logging.level}, responses in {log_dir}")
    web = settings.web
    controls = "controls on" if web.token else "controls off (no web.token)"
    lines.append(
        f"  web:        http://{web.host}:{web.port}/ ({controls})"
        if web.enabled
        else "  web:        off"
    )
    lines.append(f"  dry run:    {'yes' if settings.dry_run else 'no'}")
    return lines
