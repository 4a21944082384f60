package fsm_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/backplane/backplane/fsm"
)

// subject is a connection for filter tests: its id, user ("" for none)
// and groups.
func subject(conn, user string, groups ...string) fsm.FilterSubject {
	return fsm.FilterSubject{ConnectionID: conn, UserID: user, InGroup: func(g string) bool { return slices.Contains(groups, g) }}
}

func TestFilterMatches(t *testing.T) {
	alice := subject("c1", "alice", "room1", "room 2")
	anon := subject("c2", "")
	quoted := subject("it's", "o'hara", "a'b")
	for _, c := range []struct {
		filter string
		s      fsm.FilterSubject
		want   bool
	}{
		{"userId eq 'alice'", alice, true},
		{"userId eq 'Alice'", alice, false}, // values compare exactly
		{"UserId EQ 'alice'", alice, true},  // keywords and identifiers do not
		{"'alice' eq userId", alice, true},
		{"userId ne 'alice'", alice, false},
		{"userId ne 'bob'", alice, true},
		{"userId eq null", alice, false},
		{"userId eq null", anon, true},
		{"null eq userId", anon, true},
		{"userId ne null", anon, false},
		{"userId ne 'bob'", anon, true},
		{"userId eq 'bob'", anon, false},
		{"connectionId eq 'c1'", alice, true},
		{"connectionId ne 'c1'", alice, false},
		{"'room1' in groups", alice, true},
		{"'room 2' in groups", alice, true},
		{"'room3' in groups", alice, false},
		{"'room1' in groups", anon, false},
		{"userId in ('bob', 'alice')", alice, true},
		{"userId in ('bob')", alice, false},
		{"userId in ('bob', null)", anon, true},
		{"connectionId in ('c9','c1')", alice, true},
		{"not userId eq 'alice'", alice, false},
		{"not (userId eq 'alice')", alice, false},
		{"not('room3' in groups)", alice, true},
		{"not not true", alice, true},
		{"true", anon, true},
		{"false", alice, false},
		{"'room1' in groups and userId eq 'alice'", alice, true},
		{"'room1' in groups and userId eq 'bob'", alice, false},
		{"'room3' in groups or userId eq 'alice'", alice, true},
		{"'room3' in groups or userId eq 'bob'", alice, false},
		// and binds tighter than or; not tighter than and.
		{"true or false and false", alice, true},
		{"(true or false) and false", alice, false},
		{"not false and false", alice, false},
		{"not (false and false)", alice, true},
		{"userId eq 'o''hara'", quoted, true},
		{"connectionId eq 'it''s' and 'a''b' in groups", quoted, true},
		{"  userId\teq\n'alice'  ", alice, true},
	} {
		f, err := fsm.ParseFilter(c.filter)
		if err != nil {
			t.Fatalf("ParseFilter(%q): got error %v, want nil", c.filter, err)
		}
		if got := f.Match(c.s); got != c.want {
			t.Errorf("%q on %+v: got %v, want %v", c.filter, c.s, got, c.want)
		}
		if f.String() != c.filter {
			t.Errorf("String: got %q, want %q", f.String(), c.filter)
		}
	}
}

func TestFilterRejects(t *testing.T) {
	deep := strings.Repeat("(", 40) + "true" + strings.Repeat(")", 40)
	nots := strings.Repeat("not ", 40) + "true"
	for _, c := range []struct{ filter, says string }{
		{"", "empty"},
		{"   ", "empty"},
		{"userId", "expected eq, ne or in"},
		{"userId eq", "expected userId"},
		{"userId eq 'a' and", "expected userId"},
		{"userId eq 'a' userId eq 'b'", "unexpected"},
		{"userId eq 'a", "unterminated string"},
		{"userId = 'a'", "unexpected character"},
		{"userId gt 'a'", "expected eq, ne or in"},
		{"name eq 'a'", "expected userId"},
		{"'a' eq 'b'", "userId or connectionId on one side"},
		{"userId eq connectionId", "a 'string' or null on one side"},
		{"groups eq 'a'", "collection"},
		{"'a' in userId", "expected groups"},
		{"groups in ('a')", "'name' in groups"},
		{"null in groups", "null cannot be in groups"},
		{"userId in 'a'", "expected '('"},
		{"userId in ('a' 'b')", "expected ','"},
		{"userId in ('a', userId)", "strings"},
		{"userId in ()", "expected userId"},
		{"(userId eq 'a'", "expected ')'"},
		{"userId eq 'a')", "unexpected"},
		{deep, "nested deeper"},
		{nots, "nested deeper"},
		{strings.Repeat("x", fsm.MaxFilterLen+1), "longer than"},
	} {
		_, err := fsm.ParseFilter(c.filter)
		if !errors.Is(err, fsm.ErrInvalidCommand) || !strings.Contains(err.Error(), c.says) {
			t.Errorf("ParseFilter(%.60q): got error %v, want one wrapping %v that says %q", c.filter, err, fsm.ErrInvalidCommand, c.says)
		}
	}
	// Nesting up to the limit is fine.
	ok := strings.Repeat("(", 32) + "true" + strings.Repeat(")", 32)
	if _, err := fsm.ParseFilter(ok); err != nil {
		t.Fatalf("32 nested parentheses: got error %v, want nil", err)
	}
}

// expr is a generated filter with its own meaning, to check the parser
// against: random expressions are written out, parsed, and must decide
// exactly as the generator's evaluation does.
type expr struct {
	text string
	eval func(conn, user string, groups []string) bool
}

var (
	genUsers  = []string{"alice", "bob", "o'hara"}
	genConns  = []string{"c1", "c2", "c3"}
	genGroups = []string{"g1", "g2", "it's"}
)

func quote(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

func genExpr(r *rand.Rand, depth int) expr {
	pick := func(list []string) string { return list[r.IntN(len(list))] }
	if depth <= 0 {
		switch r.IntN(7) {
		case 0:
			u := pick(genUsers)
			return expr{"userId eq " + quote(u), func(_, user string, _ []string) bool { return user == u }}
		case 1:
			u := pick(genUsers)
			return expr{quote(u) + " ne userId", func(_, user string, _ []string) bool { return user != u }}
		case 2:
			return expr{"userId eq null", func(_, user string, _ []string) bool { return user == "" }}
		case 3:
			c := pick(genConns)
			return expr{"connectionId ne " + quote(c), func(conn, _ string, _ []string) bool { return conn != c }}
		case 4:
			g := pick(genGroups)
			return expr{quote(g) + " in groups", func(_, _ string, groups []string) bool { return slices.Contains(groups, g) }}
		case 5:
			a, b := pick(genUsers), pick(genUsers)
			return expr{fmt.Sprintf("userId in (%s, %s)", quote(a), quote(b)), func(_, user string, _ []string) bool { return user == a || user == b }}
		default:
			v := r.IntN(2) == 0
			return expr{fmt.Sprint(v), func(string, string, []string) bool { return v }}
		}
	}
	a, b := genExpr(r, depth-1-r.IntN(2)), genExpr(r, depth-1-r.IntN(2))
	switch r.IntN(3) {
	case 0:
		return expr{"(" + a.text + ") and (" + b.text + ")", func(c, u string, g []string) bool { return a.eval(c, u, g) && b.eval(c, u, g) }}
	case 1:
		return expr{"(" + a.text + ") or (" + b.text + ")", func(c, u string, g []string) bool { return a.eval(c, u, g) || b.eval(c, u, g) }}
	}
	return expr{"not (" + a.text + ")", func(c, u string, g []string) bool { return !a.eval(c, u, g) }}
}

func TestFilterRandomExpressionsDecideAsWritten(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	users := append([]string{""}, genUsers...)
	for i := 0; i < 2000; i++ {
		e := genExpr(r, 1+r.IntN(4))
		f, err := fsm.ParseFilter(e.text)
		if err != nil {
			t.Fatalf("ParseFilter(%q): got error %v, want nil", e.text, err)
		}
		for j := 0; j < 8; j++ {
			conn, user := genConns[r.IntN(len(genConns))], users[r.IntN(len(users))]
			var groups []string
			for _, g := range genGroups {
				if r.IntN(2) == 0 {
					groups = append(groups, g)
				}
			}
			if got, want := f.Match(subject(conn, user, groups...)), e.eval(conn, user, groups); got != want {
				t.Fatalf("%q on %s/%q in %v: got %v, want %v", e.text, conn, user, groups, got, want)
			}
		}
	}
}

// FuzzParseFilter: no input panics the parser, and what it accepts it
// accepts again from its own text.
func FuzzParseFilter(f *testing.F) {
	for _, s := range []string{"userId eq 'a'", "'g' in groups and not (connectionId in ('x', null))", "((true)", "'", "not", "userId in (", strings.Repeat("(", 50)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		filter, err := fsm.ParseFilter(s)
		if err != nil {
			if !errors.Is(err, fsm.ErrInvalidCommand) {
				t.Fatalf("ParseFilter(%q): error %v does not wrap %v", s, err, fsm.ErrInvalidCommand)
			}
			return
		}
		filter.Match(subject("c", "u", "g"))
		if _, err := fsm.ParseFilter(filter.String()); err != nil {
			t.Fatalf("ParseFilter(String()) of %q: %v", s, err)
		}
	})
}
