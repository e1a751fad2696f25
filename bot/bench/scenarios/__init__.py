"""The bench's scenarios, one module each, each `async def run(ctx) -> ScenarioResult`."""
