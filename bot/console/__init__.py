"""The work console (工作台): where grid workers, street and department staff, dispatchers
and admins receive, handle and close routed tickets. Mounted on the web app by
`bot.console.app.setup_console(app)`."""
