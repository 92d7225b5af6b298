# Names that vulture cannot see being used because a library calls them by name.
# `vulture bot cogs .ci/vulture_allowlist.py` (see .ci/run); command callbacks are registered by
# their decorators instead (ignore_decorators in pyproject.toml).
# ruff: noqa

_ = object()

# discord.py: the extension loader calls `setup`; the client and cogs call these hooks.
_.setup
_.setup_hook
_.on_ready
_.on_connect
_.on_resumed
_.on_guild_available
_.on_command_error
_.cog_load
_.cog_unload
_.interaction_check  # the command tree calls it before every slash command and menu

# discord.py: events dispatched by name to the listeners that carry the event's name.
_.on_message
_.on_raw_message_delete
_.on_raw_bulk_message_delete
_.on_raw_message_edit
_.on_raw_reaction_add
_.on_guild_channel_delete
_.on_channel_update  # registered as on_guild_channel_update
_.on_raw_thread_delete
_.on_guild_remove
_.on_permissions_change  # registered under the names of four events

# torch: nn.Module.__call__ calls `forward`.
_.forward
# torch: a module assigned to a module's attribute is registered, and reached through
# `.parameters()` (TextTower's norms: own_memory copies them out of the checkpoint's map).
_.norms

# The one-picture decode (an animation's caption frame) that the tests and the benchmarks use;
# the bot itself decodes every frame it needs with `load_frames`.
_.load_image

# Pillow: the AVIF decoder reads its thread count from this module global.
_.DEFAULT_MAX_THREADS
