// Package api is Chorus's control API: the conference, member and call
// resources of Bandwidth's Catapult v1 Voice API, served over HTTP so that
// applications written against Catapult (node-bandwidth, go-bandwidth and
// the other SDKs) work unchanged when pointed at Chorus.
//
// Every route lives under /v1/users/{userId} and needs HTTP Basic auth with
// that user's token and secret. The shapes follow shared/spec/catapult-v1.md:
// creates answer 201 with an empty body and an absolute Location built from
// the request's own scheme and host; updates answer 200, never 204; bodies
// are read leniently ("true" for true, "2000" for 2000, null for absent,
// {} for nothing to do); every error is a JSON body
// {category, code, message, details}.
//
// The package reaches conferences and calls only through package bridge.
// Audio for the audio endpoints comes from an AudioSources (a file fetcher
// and a text-to-speech engine); it is fetched or rendered off the request
// goroutine, and playback and speech events go out through the bridge's
// event sink with the bridge's own events, in one order.
//
// Limits keep one caller from hurting the others: an address that sends
// too many wrong credentials gets 429 with Retry-After before its
// credentials are checked (authLimiter); every stored string (tag, URLs),
// list page (page, size) and a user's live conferences are bounded, and
// anything out of bounds is a 400 or 403 naming the limit. The HTTP
// server's timeouts and connection cap live in the binary (cmd/chorus).
//
// The OpenAPI 3 description of every route is embedded (openapi.json) and
// served without auth at GET /openapi.json.
package api
