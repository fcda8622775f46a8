package main

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseYAML(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     []any
	}{
		{"kiln's config", "# comment\ntoken-file: /etc/kiln/secrets/k3s/token\nnode-ip: 10.0.0.21\ntls-san:\n  - k3s-1\n  - \"true\"\n  - '10.0.0.21'\nwrite-kubeconfig-mode: \"0600\"\n",
			[]any{map[string]any{"token-file": "/etc/kiln/secrets/k3s/token", "node-ip": "10.0.0.21",
				"tls-san": []any{"k3s-1", "true", "10.0.0.21"}, "write-kubeconfig-mode": "0600"}}},
		{"sequence at its key's column", "disable:\n- traefik\n- servicelb\nnext: 1\n",
			[]any{map[string]any{"disable": []any{"traefik", "servicelb"}, "next": int64(1)}}},
		{"sequence of mappings", "containers:\n  - name: a\n    image: x:1 # pinned\n  - {name: b, image: 'y'}\n",
			[]any{map[string]any{"containers": []any{map[string]any{"name": "a", "image": "x:1"}, map[string]any{"name": "b", "image": "y"}}}}},
		{"documents", "---\na: 1\n---\n# empty\n---\nb: [1, two, {c: d}]\n...\n",
			[]any{map[string]any{"a": int64(1)}, map[string]any{"b": []any{int64(1), "two", map[string]any{"c": "d"}}}}},
		{"scalars", "n: null\nt: true\nf: 1.5\ns: http://x:80/y\nq: \"a\\tb\"\ne: ''\nsq: 'it''s'\nhash: a#b\n",
			[]any{map[string]any{"n": nil, "t": true, "f": 1.5, "s": "http://x:80/y", "q": "a\tb", "e": "", "sq": "it's", "hash": "a#b"}}},
		{"block scalars", "lit: |\n  a\n   b\n\n  c\nfold: >-\n  x\n  y\nafter: z\n",
			[]any{map[string]any{"lit": "a\n b\n\nc\n", "fold": "x y", "after": "z"}}},
		{"nested", "spec:\n  source:\n    repoURL: 'git@h:r #1.git'\n  empty:\n", []any{map[string]any{
			"spec": map[string]any{"source": map[string]any{"repoURL": "git@h:r #1.git"}, "empty": nil}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseYAML(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseYAMLRefuses(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"bad indentation", "a:\n  b: 1\n   c: 2\n", "line 3: bad indentation"},
		{"not a key", "a: 1\njust text\n", "line 2: want \"key: value\""},
		{"repeated key", "a: 1\na: 2\n", "key \"a\" repeated"},
		{"unclosed flow", "a: [1, 2\n", "unterminated flow collection"},
		{"unclosed quote", "a: \"x\n", "unterminated quoted scalar"},
		{"tab", "a:\n\t b: 1\n", "tab in indentation"},
		{"anchor", "a: &x 1\n", "not in the stand-in's YAML subset"},
		{"trailing", "a: [1] x\n", "unexpected \"x\""},
		{"indicator", "a: @x\n", "cannot start with '@'"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseYAML(tc.in)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("parseYAML = %v, want an error saying %q", err, tc.want)
			}
		})
	}
	if _, err := parseYAML("a: !!str 1\n"); !errors.Is(err, errUnsupported) && (err == nil || !strings.Contains(err.Error(), "subset")) {
		t.Errorf("a tag: %v, want unsupported", err)
	}
}
