"""Our aiohttp web server: the work console and the chat widget (bot.web.app.init_app)."""
