package tts

import "strings"

// catapultVoice is a Catapult voice name's language, gender and the
// espeak-ng variant that stands in for it.
type catapultVoice struct {
	locale  string // Catapult locale, lower case with '_'
	female  bool
	variant string // espeak-ng voices/!v file
}

// lookupVoice returns Catapult's documented voice of that lower-case name.
// Voices of one language get different variants so they sound different.
// (A switch, not a map, keeps the package free of mutable globals.)
func lookupVoice(name string) (catapultVoice, bool) {
	switch name {
	case "susan":
		return catapultVoice{"en_us", true, "f3"}, true
	case "kate":
		return catapultVoice{"en_us", true, "f2"}, true
	case "julie":
		return catapultVoice{"en_us", true, "f4"}, true
	case "dave":
		return catapultVoice{"en_us", false, "m3"}, true
	case "paul":
		return catapultVoice{"en_us", false, "m1"}, true
	case "bridget":
		return catapultVoice{"en_gb", true, "f3"}, true
	case "esperanza":
		return catapultVoice{"es_mx", true, "f3"}, true
	case "violeta":
		return catapultVoice{"es_mx", true, "f2"}, true
	case "jorge":
		return catapultVoice{"es_mx", false, "m3"}, true
	case "jolie":
		return catapultVoice{"fr_fr", true, "f3"}, true
	case "bernard":
		return catapultVoice{"fr_fr", false, "m3"}, true
	case "katrin":
		return catapultVoice{"de_de", true, "f3"}, true
	case "stefan":
		return catapultVoice{"de_de", false, "m3"}, true
	case "paola":
		return catapultVoice{"it_it", true, "f3"}, true
	case "luca":
		return catapultVoice{"it_it", false, "m3"}, true
	}
	return catapultVoice{}, false
}

// language maps a Catapult locale (lower case, '_') to an espeak-ng language.
func language(locale string) (string, bool) {
	switch locale {
	case "en", "en_us":
		return "en-us", true
	case "en_uk", "en_gb":
		return "en-gb", true
	case "es", "es_es":
		return "es", true
	case "es_mx", "es_us", "es_419":
		return "es-419", true
	case "fr", "fr_fr":
		return "fr-fr", true
	case "de", "de_de":
		return "de", true
	case "it", "it_it":
		return "it", true
	case "pt", "pt_pt":
		return "pt", true
	case "pt_br":
		return "pt-br", true
	}
	return "", false
}

// Default variants when the voice name is not one of Catapult's.
const (
	defaultFemale = "f3"
	defaultMale   = "m3"
)

// VoiceFor returns the espeak-ng voice ("-v" argument, language+variant,
// like "en-us+f3") for Catapult's gender, locale and voice parameters. All
// three are case-insensitive and may be empty.
//
//   - A known voice name (Susan, Kate, Julie, Dave, Paul, Bridget,
//     Esperanza, Violeta, Jorge, Jolie, Bernard, Katrin, Stefan, Paola,
//     Luca) sets the gender and variant, whatever gender says, and the
//     language when locale is empty.
//   - locale accepts "_" or "-": en_US, en_UK, en_GB, es, es_MX, fr, fr_FR,
//     de, de_DE, it, it_IT, pt, pt_BR. Empty means en_US (or the voice's
//     own locale). An unknown locale falls back to US English (en-us).
//   - Otherwise gender "male" gives a male variant, and anything else
//     (empty, "female", unknown) a female one, as Catapult's default is
//     female.
func VoiceFor(gender, locale, voice string) string {
	v, known := lookupVoice(strings.ToLower(strings.TrimSpace(voice)))
	loc := strings.ReplaceAll(strings.ToLower(strings.TrimSpace(locale)), "-", "_")
	if loc == "" {
		loc = "en_us"
		if known {
			loc = v.locale
		}
	}
	lang, ok := language(loc)
	if !ok {
		lang = "en-us"
	}
	variant := defaultFemale
	switch {
	case known:
		variant = v.variant
	case strings.EqualFold(strings.TrimSpace(gender), "male"):
		variant = defaultMale
	}
	return lang + "+" + variant
}
