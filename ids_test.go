package agentconnections_test

import (
	"encoding/json"
	"math/rand/v2"
	"testing"

	ac "github.com/agentops/agentconnections"
)

// JSONBytes is what encoding/json writes for a string, escapes included.
func TestJSONBytes_MatchesEncodingJSON(t *testing.T) {
	cases := []string{"", "c1", `a"b`, `a\b`, "<&>", "\u2028\u2029", "é漢字🙂", "tab\there", "\x01"}
	rng := rand.New(rand.NewPCG(1, 2))
	alphabet := []rune("ab<>&\"\\é漢🙂\u2028-_.:")
	for range 500 {
		r := make([]rune, rng.IntN(40))
		for i := range r {
			r[i] = alphabet[rng.IntN(len(alphabet))]
		}
		cases = append(cases, string(r))
	}
	for _, s := range cases {
		b, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		if got := ac.JSONBytes(s); got != len(b) {
			t.Errorf("JSONBytes(%q): got %d, want %d", s, got, len(b))
		}
	}
}
