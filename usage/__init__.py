"""Usage, rollout and licences for auditors: daily roll-ups of meeting and participant
sessions, forecasts, streamed exports, monthly reports, dashboards, data protection."""
