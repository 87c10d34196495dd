"""What to do about a Slack error code: the next step a person takes, in one phrase.

Used wherever a Slack answer reaches a person: a delivery error (and so the dead letter
`bridge outbox` shows), `bridge notify-test` and `bridge check --online`. Codes are Slack's
(api.slack.com/methods/chat.postMessage#errors, auth.test, incoming webhooks).
"""

from __future__ import annotations

SCOPES_PAGE = "OAuth & Permissions > Bot Token Scopes, then reinstall the app"
TOKEN_PAGE = "the Bot User OAuth Token (xoxb-…) on your app's OAuth & Permissions page"

NEXT_STEPS: dict[str, str] = {
    "not_in_channel": "invite the bot: /invite @your-bot in the channel (or add the "
                      f"chat:write.public scope under {SCOPES_PAGE})",
    "channel_not_found": "check `channel` (a name like #ops-alerts or an id like C0123); "
                         "for a private channel invite the bot first",
    "is_archived": "the channel is archived: unarchive it or set another `channel`",
    "invalid_auth": f"the token is not valid: set `token` to {TOKEN_PAGE}",
    "not_authed": f"no token was sent: set `token` to {TOKEN_PAGE}",
    "token_revoked": f"the token was revoked: reinstall the app and use {TOKEN_PAGE}",
    "token_expired": f"the token expired: use {TOKEN_PAGE} (bot tokens without rotation "
                     "do not expire)",
    "account_inactive": "the bot user or the app was deactivated: reinstall the app",
    "restricted_action": "a workspace setting keeps the bot from posting in this channel: "
                         "ask a Slack admin",
    "invalid_blocks": "the template's Block Kit JSON is not valid: see it with `bridge render`",
    "invalid_blocks_format": "the template's blocks are not a JSON list: see it with "
                             "`bridge render`",
    "msg_too_long": "the message is too long: shorten the template (| truncate)",
    "no_text": "the template rendered empty text: see it with `bridge render`",
    "no_service": "this incoming webhook was removed or disabled: make a new one and set "
                  "`webhook_url`",
    "invalid_token": "the incoming webhook URL is not valid: copy it again from the app's "
                     "Incoming Webhooks page",
    "action_prohibited": "a workspace admin restricted this incoming webhook",
    "channel_is_archived": "the webhook's channel is archived: make a webhook for another one",
}


def next_step(code: str | None, *, needed: str | None = None) -> str | None:
    """The next step for Slack error `code`; `needed` is what `missing_scope` names."""
    if code == "missing_scope":
        scope = needed or "the scope the method needs"
        return f"add the scope {scope} under {SCOPES_PAGE}"
    return NEXT_STEPS.get(code or "")
