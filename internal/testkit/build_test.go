package testkit

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestModuleRootHoldsGoMod(t *testing.T) {
	root, err := ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(b), "module github.com/backplane/backplane\n") {
		t.Fatalf("go.mod of %s starts %.40q, want the backplane module", root, b)
	}
}

func TestBuildMakesAnExecutableOrSaysWhyNot(t *testing.T) {
	dir := t.TempDir()
	bin, err := Build(dir, "upstream-example", "./examples/upstream")
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(bin); err != nil || fi.Mode()&0o111 == 0 || filepath.Dir(bin) != dir {
		t.Fatalf("Build gave %s (%v, %v), want an executable in %s", bin, fi, err, dir)
	}
	if _, err := Build(dir, "nothing", "./no/such/package"); err == nil || !strings.Contains(err.Error(), "./no/such/package") {
		t.Fatalf("building a missing package: got %v, want an error naming it", err)
	}
}
