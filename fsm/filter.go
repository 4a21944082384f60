package fsm

import (
	"fmt"
	"strings"
)

// The OData filter subset of Azure SignalR's REST API (2024-12-01,
// :execute): a boolean expression over a connection's userId,
// connectionId and groups, with eq, ne, in, and, or, not, parentheses and
// the literals true, false and null. Examples:
//
//	userId eq 'alice'
//	'room1' in groups and not (userId in ('bob', 'carol'))
//	connectionId ne 'abc' or userId eq null
//
// The state machine evaluates a filter at apply time against the
// replicated connections and memberships, so every replica selects the same
// connections at the same log position. Keywords and identifiers are case
// insensitive; values are compared exactly, as Backplane compares user ids,
// connection ids and group names everywhere else. A string literal is
// quoted with ', and a ' inside it is written ''.

// Filter limits: a filter travels in a log command and is parsed on every
// replica, so its size and nesting are bounded.
const (
	MaxFilterLen   = 4096 // bytes
	maxFilterDepth = 32   // nested parentheses and nots
)

// ConnFilter is a parsed filter over connections.
type ConnFilter struct {
	root filterNode
	src  string
}

// FilterSubject is what a filter is evaluated against: one connection.
// UserID is "" for an anonymous connection (userId eq null). InGroup
// reports whether the connection is in a group, directly or through its
// user.
type FilterSubject struct {
	ConnectionID string
	UserID       string
	InGroup      func(group string) bool
}

// String returns the filter as it was written.
func (f *ConnFilter) String() string { return f.src }

// Match reports whether s satisfies the filter.
func (f *ConnFilter) Match(s FilterSubject) bool { return f.root.eval(&s) }

type filterNode interface {
	eval(s *FilterSubject) bool
}

type (
	filterAnd   struct{ l, r filterNode }
	filterOr    struct{ l, r filterNode }
	filterNot   struct{ x filterNode }
	filterConst bool
	// filterCompare is field eq/ne value; null compares with no user.
	filterCompare struct {
		field string // "userId" or "connectionId"
		ne    bool
		value *string // nil: null
	}
	// filterIn is field in (values...).
	filterIn struct {
		field  string
		values []*string
	}
	// filterInGroups is 'group' in groups.
	filterInGroups struct{ group string }
)

func (n filterAnd) eval(s *FilterSubject) bool { return n.l.eval(s) && n.r.eval(s) }
func (n filterOr) eval(s *FilterSubject) bool  { return n.l.eval(s) || n.r.eval(s) }
func (n filterNot) eval(s *FilterSubject) bool { return !n.x.eval(s) }
func (n filterConst) eval(*FilterSubject) bool { return bool(n) }

// fieldValue is a connection's field; nil for a missing user.
func fieldValue(s *FilterSubject, field string) *string {
	if field == fieldConnectionID {
		return &s.ConnectionID
	}
	if s.UserID == "" {
		return nil
	}
	return &s.UserID
}

func sameValue(a, b *string) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return *a == *b
}

func (n filterCompare) eval(s *FilterSubject) bool {
	return sameValue(fieldValue(s, n.field), n.value) != n.ne
}

func (n filterIn) eval(s *FilterSubject) bool {
	v := fieldValue(s, n.field)
	for _, w := range n.values {
		if sameValue(v, w) {
			return true
		}
	}
	return false
}

func (n filterInGroups) eval(s *FilterSubject) bool {
	return s.InGroup != nil && s.InGroup(n.group)
}

// Field names, as a filter spells them (case insensitively).
const (
	fieldUserID       = "userId"
	fieldConnectionID = "connectionId"
	fieldGroups       = "groups"
)

// ParseFilter parses a connection filter. An error wraps ErrInvalidCommand and says
// where the filter went wrong.
func ParseFilter(src string) (*ConnFilter, error) {
	if len(src) > MaxFilterLen {
		return nil, fmt.Errorf("%w: filter is longer than %d bytes", ErrInvalidCommand, MaxFilterLen)
	}
	toks, err := lexFilter(src)
	if err != nil {
		return nil, err
	}
	p := &filterParser{toks: toks}
	if p.peek().kind == tokEOF {
		return nil, fmt.Errorf("%w: filter is empty", ErrInvalidCommand)
	}
	root, err := p.parseOr()
	if err != nil {
		return nil, err
	}
	if t := p.peek(); t.kind != tokEOF {
		return nil, p.errorf(t, "unexpected %s", t)
	}
	return &ConnFilter{root: root, src: src}, nil
}

type tokKind byte

const (
	tokEOF tokKind = iota
	tokWord
	tokString
	tokOpen
	tokClose
	tokComma
)

type filterToken struct {
	kind tokKind
	text string // a word as written, or a string literal's value
	pos  int
}

func (t filterToken) String() string {
	switch t.kind {
	case tokEOF:
		return "end of filter"
	case tokString:
		return fmt.Sprintf("string '%s'", strings.ReplaceAll(t.text, "'", "''"))
	case tokWord:
		return fmt.Sprintf("%q", t.text)
	}
	return fmt.Sprintf("%q", t.text)
}

func (t filterToken) is(word string) bool {
	return t.kind == tokWord && strings.EqualFold(t.text, word)
}

func isWordByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_'
}

func lexFilter(src string) ([]filterToken, error) {
	var toks []filterToken
	for i := 0; i < len(src); {
		c := src[i]
		switch {
		case c == ' ' || c == '\t' || c == '\r' || c == '\n':
			i++
		case c == '(':
			toks = append(toks, filterToken{kind: tokOpen, text: "(", pos: i})
			i++
		case c == ')':
			toks = append(toks, filterToken{kind: tokClose, text: ")", pos: i})
			i++
		case c == ',':
			toks = append(toks, filterToken{kind: tokComma, text: ",", pos: i})
			i++
		case c == '\'':
			start := i
			var b strings.Builder
			i++
			for {
				if i >= len(src) {
					return nil, fmt.Errorf("%w: filter: unterminated string at offset %d", ErrInvalidCommand, start)
				}
				if src[i] == '\'' {
					if i+1 < len(src) && src[i+1] == '\'' {
						b.WriteByte('\'')
						i += 2
						continue
					}
					i++
					break
				}
				b.WriteByte(src[i])
				i++
			}
			toks = append(toks, filterToken{kind: tokString, text: b.String(), pos: start})
		case isWordByte(c):
			start := i
			for i < len(src) && isWordByte(src[i]) {
				i++
			}
			toks = append(toks, filterToken{kind: tokWord, text: src[start:i], pos: start})
		default:
			return nil, fmt.Errorf("%w: filter: unexpected character %q at offset %d", ErrInvalidCommand, c, i)
		}
	}
	return append(toks, filterToken{kind: tokEOF, pos: len(src)}), nil
}

type filterParser struct {
	toks  []filterToken
	i     int
	depth int
}

func (p *filterParser) peek() filterToken { return p.toks[p.i] }

func (p *filterParser) next() filterToken {
	t := p.toks[p.i]
	if t.kind != tokEOF {
		p.i++
	}
	return t
}

func (p *filterParser) errorf(t filterToken, format string, args ...any) error {
	return fmt.Errorf("%w: filter: %s at offset %d", ErrInvalidCommand, fmt.Sprintf(format, args...), t.pos)
}

// nested parses with parse what the token t opens ("not" or "("), one
// level deeper; deeper than maxFilterDepth is an error at t.
func (p *filterParser) nested(t filterToken, parse func() (filterNode, error)) (filterNode, error) {
	p.depth++
	if p.depth > maxFilterDepth {
		return nil, p.errorf(t, "nested deeper than %d", maxFilterDepth)
	}
	x, err := parse()
	p.depth--
	return x, err
}

// parseOr parses and-expressions joined by "or".
func (p *filterParser) parseOr() (filterNode, error) {
	return p.parseJoined("or", p.parseAnd, func(l, r filterNode) filterNode { return filterOr{l, r} })
}

// parseAnd parses not-expressions joined by "and".
func (p *filterParser) parseAnd() (filterNode, error) {
	return p.parseJoined("and", p.parseNot, func(l, r filterNode) filterNode { return filterAnd{l, r} })
}

// parseJoined parses one or more operands joined by the keyword op,
// grouping them from the left with join.
func (p *filterParser) parseJoined(op string, operand func() (filterNode, error), join func(l, r filterNode) filterNode) (filterNode, error) {
	left, err := operand()
	for err == nil && p.peek().is(op) {
		p.next()
		var right filterNode
		if right, err = operand(); err == nil {
			left = join(left, right)
		}
	}
	return left, err
}

func (p *filterParser) parseNot() (filterNode, error) {
	t := p.peek()
	if !t.is("not") {
		return p.parsePrimary()
	}
	p.next()
	x, err := p.nested(t, p.parseNot)
	if err != nil {
		return nil, err
	}
	return filterNot{x}, nil
}

// operand is one side of a comparison: a field, a string or null.
type operand struct {
	tok   filterToken
	field string  // set for a field
	value *string // a string; nil with field "" for null
}

func (p *filterParser) parseOperand() (operand, error) {
	t := p.next()
	switch {
	case t.kind == tokString:
		v := t.text
		return operand{tok: t, value: &v}, nil
	case t.is("null"):
		return operand{tok: t}, nil
	case t.is(fieldUserID):
		return operand{tok: t, field: fieldUserID}, nil
	case t.is(fieldConnectionID):
		return operand{tok: t, field: fieldConnectionID}, nil
	case t.is(fieldGroups):
		return operand{tok: t, field: fieldGroups}, nil
	}
	return operand{}, p.errorf(t, "expected userId, connectionId, groups, a 'string' or null, found %s", t)
}

func (p *filterParser) parsePrimary() (filterNode, error) {
	t := p.peek()
	switch {
	case t.kind == tokOpen:
		p.next()
		x, err := p.nested(t, p.parseOr)
		if err != nil {
			return nil, err
		}
		if c := p.next(); c.kind != tokClose {
			return nil, p.errorf(c, "expected ')', found %s", c)
		}
		return x, nil
	case t.is("true"):
		p.next()
		return filterConst(true), nil
	case t.is("false"):
		p.next()
		return filterConst(false), nil
	}
	left, err := p.parseOperand()
	if err != nil {
		return nil, err
	}
	op := p.next()
	switch {
	case op.is("eq"), op.is("ne"):
		right, err := p.parseOperand()
		if err != nil {
			return nil, err
		}
		return p.compare(left, right, op)
	case op.is("in"):
		return p.parseIn(left, op)
	}
	return nil, p.errorf(op, "expected eq, ne or in, found %s", op)
}

// compare builds field eq/ne value, with the field on either side.
func (p *filterParser) compare(left, right operand, op filterToken) (filterNode, error) {
	if left.field == "" {
		left, right = right, left
	}
	switch {
	case left.field == "":
		return nil, p.errorf(op, "a comparison needs userId or connectionId on one side")
	case left.field == fieldGroups || right.field == fieldGroups:
		return nil, p.errorf(op, "groups is a collection: write 'name' in groups")
	case right.field != "":
		return nil, p.errorf(op, "a comparison needs a 'string' or null on one side")
	}
	return filterCompare{field: left.field, ne: op.is("ne"), value: right.value}, nil
}

// parseIn parses the right side of in: groups after a string, or a list
// of strings (or null) after userId or connectionId.
func (p *filterParser) parseIn(left operand, op filterToken) (filterNode, error) {
	switch left.field {
	case "":
		if left.value == nil {
			return nil, p.errorf(left.tok, "null cannot be in groups")
		}
		if g := p.next(); !g.is(fieldGroups) {
			return nil, p.errorf(g, "expected groups after in, found %s", g)
		}
		return filterInGroups{group: *left.value}, nil
	case fieldGroups:
		return nil, p.errorf(op, "write 'name' in groups, not groups in ...")
	}
	if o := p.next(); o.kind != tokOpen {
		return nil, p.errorf(o, "expected '(' and a list after in, found %s", o)
	}
	n := filterIn{field: left.field}
	for {
		v, err := p.parseOperand()
		if err != nil {
			return nil, err
		}
		if v.field != "" {
			return nil, p.errorf(v.tok, "a list after in holds 'strings' or null, not %s", v.tok)
		}
		n.values = append(n.values, v.value)
		sep := p.next()
		if sep.kind == tokClose {
			return n, nil
		}
		if sep.kind != tokComma {
			return nil, p.errorf(sep, "expected ',' or ')' in the list, found %s", sep)
		}
	}
}
