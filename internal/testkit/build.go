package testkit

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// ModuleRoot is the folder that holds the main module's go.mod.
func ModuleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("go env GOMOD: not inside a module")
	}
	return filepath.Dir(gomod), nil
}

// Build builds the main package pkg, a path from the module root such as
// "./cmd/node", into dir/name and returns the binary's path.
func Build(dir, name, pkg string) (string, error) {
	root, err := ModuleRoot()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, name)
	build := exec.Command("go", "build", "-o", bin, pkg)
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s: %w\n%s", pkg, err, out)
	}
	return bin, nil
}

// RunWithNode is a TestMain for suites that start backplane processes: it
// builds ./cmd/node into a temporary folder and stores its path in binary,
// runs setup (if not nil) with that folder, then the tests, and removes the
// folder. It returns the exit code for os.Exit.
func RunWithNode(m *testing.M, binary *string, setup func(dir string) error) int {
	dir, err := os.MkdirTemp("", "backplane-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "create temp dir:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	if setup != nil {
		if err := setup(dir); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	if *binary, err = Build(dir, "backplane", "./cmd/node"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}
