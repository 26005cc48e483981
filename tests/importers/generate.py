"""Big test files generated on the fly (never committed), streamed to disk row by row."""

from __future__ import annotations

from pathlib import Path

GENERATIONS_HEADER = (
    "generation_id,created_at,cost_total,cost_web_search,cost_cache,cost_file_processing,byok_usage_inference,"
    "tokens_prompt,tokens_completion,tokens_reasoning,tokens_cached,model_permaslug,provider_name,variant,cancelled,"
    "streamed,user,finish_reason_raw,finish_reason_normalized,generation_time_ms,time_to_first_token_ms,"
    "api_key_disabled,api_key_name,app_name\n"
)
MODELS = ("openai/gpt-4o-mini", "anthropic/claude-4.5-sonnet-20250929", "meta-llama/llama-3.3-70b-instruct")


def openrouter_generations(path: Path, n: int) -> Path:
    """`n` per-request rows; row i costs i·10⁻⁶ USD and uses 100+i%1000 prompt, 10+i%100 completion tokens."""
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write(GENERATIONS_HEADER)
        for i in range(n):
            day, sec = 1 + (i // 86_400) % 28, i % 86_400
            f.write(
                f"gen-{i:09d},2026-04-{day:02d} {sec // 3600:02d}:{sec // 60 % 60:02d}:{sec % 60:02d}.{i % 1000:03d},"
                f"{i / 1_000_000:.6f},0,0,0,0,{100 + i % 1000},{10 + i % 100},0,{i % 50},{MODELS[i % 3]},Prov,"
                f"standard,false,true,u{i % 7},stop,stop,{100 + i % 900},{10 + i % 90},false,key,app\n"
            )
    return path


def generic_rows(path: Path, n: int) -> Path:
    """`n` rows of a made-up CSV for the generic importer (mapping: see tests/bench)."""
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write("When,Vendor,Model,Prompt,Completion,Spend\n")
        for i in range(n):
            day, sec = 1 + (i // 86_400) % 28, i % 86_400
            f.write(f"2026-04-{day:02d}T{sec // 3600:02d}:{sec // 60 % 60:02d}:{sec % 60:02d}Z,openai,gpt-4o-mini,"
                    f"{100 + i % 1000},{10 + i % 100},{i / 1_000_000:.6f}\n")
    return path
