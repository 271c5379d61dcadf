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
// The OpenAPI 3 description of every route is embedded (openapi.json) and
// served without auth at GET /openapi.json.
package api
