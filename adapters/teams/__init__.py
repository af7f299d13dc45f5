"""Microsoft Teams through the Microsoft 365 Agents SDK (`microsoft-agents-*`): the only place that SDK is
imported. `auth` checks the Bot Framework's tokens, `parse` turns activities into inbound messages,
`render` replies into Adaptive Cards, `connector` posts them, `adapter` ties them to the hub."""
