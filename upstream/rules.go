package upstream

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"
)

// Rule is one upstream item, as in Azure SignalR Service's upstream
// settings: a URL template and the hubs, categories and events it serves.
// Items are tried in order; the first whose three patterns all match wins.
type Rule struct {
	// URL is the template: {hub}, {category} and {event} are replaced by
	// the percent-escaped values. The result must be an absolute http or
	// https URL.
	URL string
	// Hub, Category and Event are patterns: "" or "*" match anything, "a,b"
	// lists names (entries trimmed), anything else is the exact name.
	// Matching is case-sensitive, as Azure's emulator.
	Hub, Category, Event string
}

// ParseRule parses the -upstream flag's syntax: an optional prefix of
// "hub=PATTERN;", "category=PATTERN;" and "event=PATTERN;" segments, in any
// order, then the URL template. For example
//
//	http://127.0.0.1:7071/runtime/webhooks/signalr?code=KEY
//	hub=chat,news;category=messages;event=*;http://127.0.0.1:8080/{hub}/{event}
func ParseRule(s string) (Rule, error) {
	var r Rule
	rest := strings.TrimSpace(s)
	seen := map[string]bool{}
	for {
		key, _, ok := strings.Cut(rest, "=")
		if !ok || (key != "hub" && key != "category" && key != "event") {
			break
		}
		seg, after, ok := strings.Cut(rest, ";")
		if !ok {
			return Rule{}, fmt.Errorf("upstream rule %q: %q needs a ';' and a URL template after it", s, seg)
		}
		if seen[key] {
			return Rule{}, fmt.Errorf("upstream rule %q: %s= given twice", s, key)
		}
		seen[key] = true
		val := strings.TrimSpace(seg[len(key)+1:])
		switch key {
		case "hub":
			r.Hub = val
		case "category":
			r.Category = val
		case "event":
			r.Event = val
		}
		rest = strings.TrimSpace(after)
	}
	r.URL = rest
	if err := r.validate(); err != nil {
		return Rule{}, fmt.Errorf("upstream rule %q: %w", s, err)
	}
	return r, nil
}

// validate checks that the template expands to an absolute http(s) URL.
func (r Rule) validate() error {
	if r.URL == "" {
		return errors.New("no URL template")
	}
	u, err := url.Parse(r.expand("hub", "category", "event"))
	if err != nil {
		return fmt.Errorf("URL template: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("URL template %q: must be an absolute http or https URL", r.URL)
	}
	for _, p := range []string{r.Hub, r.Category, r.Event} {
		for _, item := range strings.Split(p, ",") {
			if strings.TrimSpace(item) == "" && p != "" {
				return fmt.Errorf("pattern %q has an empty entry", p)
			}
		}
	}
	return nil
}

// matches reports whether the rule serves this hub, category and event.
func (r Rule) matches(hub, category, event string) bool {
	return matchPattern(r.Hub, hub) && matchPattern(r.Category, category) && matchPattern(r.Event, event)
}

// expand fills the template with percent-escaped values.
func (r Rule) expand(hub, category, event string) string {
	return strings.NewReplacer(
		"{hub}", url.PathEscape(hub),
		"{category}", url.PathEscape(category),
		"{event}", url.PathEscape(event),
	).Replace(r.URL)
}

// matchPattern matches Azure's rule syntax: "*" (or empty), a comma list,
// or an exact name.
func matchPattern(pattern, name string) bool {
	if pattern == "" || pattern == "*" {
		return true
	}
	for _, item := range strings.Split(pattern, ",") {
		item = strings.TrimSpace(item)
		if item == "*" || item == name {
			return true
		}
	}
	return false
}

// find returns the URL of the first rule that matches, or "".
func find(rules []Rule, hub, category, event string) string {
	for _, r := range rules {
		if r.matches(hub, category, event) {
			return r.expand(hub, category, event)
		}
	}
	return ""
}

// ListFlag is a repeatable string flag (flag.Value): each use adds a value,
// and a value with newlines (as from an environment variable) adds one per
// non-empty line.
type ListFlag []string

// String implements flag.Value.
func (l *ListFlag) String() string { return strings.Join(*l, " ") }

// Set implements flag.Value.
func (l *ListFlag) Set(v string) error {
	for _, line := range strings.Split(v, "\n") {
		if line = strings.TrimSpace(line); line != "" {
			*l = append(*l, line)
		}
	}
	return nil
}

// FromFlags builds a Config from the command line's -upstream rules,
// -upstream-key keys, -upstream-timeout and -upstream-connect-event. No
// rules: ok is false (no upstream).
func FromFlags(rules, keys []string, timeout time.Duration, connectEvent bool) (cfg Config, ok bool, err error) {
	if len(rules) == 0 {
		if len(keys) > 0 || connectEvent {
			return Config{}, false, errors.New("-upstream-key and -upstream-connect-event need -upstream")
		}
		return Config{}, false, nil
	}
	for _, s := range rules {
		r, err := ParseRule(s)
		if err != nil {
			return Config{}, false, fmt.Errorf("-upstream: %w", err)
		}
		cfg.Rules = append(cfg.Rules, r)
	}
	if timeout <= 0 {
		return Config{}, false, fmt.Errorf("-upstream-timeout %s: must be positive", timeout)
	}
	cfg.Keys, cfg.Timeout, cfg.ConnectEvent = keys, timeout, connectEvent
	return cfg, true, nil
}
