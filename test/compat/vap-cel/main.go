// Command vap-cel evaluates a ValidatingAdmissionPolicy's CEL (matchConditions, variables,
// validations) with cel-go, the CEL engine the API server embeds, over admission requests, so a
// test can show what the policy allows and denies without a cluster.
//
// Input (stdin): {"policy": <the ValidatingAdmissionPolicy as JSON>, "cases": [{"name": "...",
// "operation": "CREATE|UPDATE|DELETE", "username": "...", "extra": {"key": ["value"]},
// "object": {...} | null, "oldObject": {...} | null, "expect": "allow|deny", "expectReason":
// "<part of the denial's message>" (optional)}]}.
// Output: one "PASS|FAIL <name>: allowed|denied (<why>)" line per case, then a count. Exit 1 when
// a case's outcome differs from "expect", 2 on bad input or an expression that does not compile.
//
// Semantics as the API server applies them with failurePolicy Fail: a matchCondition that is
// false leaves the request alone (allowed); a validation that is false denies with its message
// (messageExpression when set); an evaluation error denies. Variables are evaluated in order and
// seen as variables.<name> by the later ones. The variables are typed dyn here; the API server
// types object and oldObject by the resource's schema, which a test of behaviour does not need.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"github.com/google/cel-go/cel"
)

type namedExpression struct {
	Name              string `json:"name"`
	Expression        string `json:"expression"`
	Message           string `json:"message"`
	MessageExpression string `json:"messageExpression"`
}

type policy struct {
	Spec struct {
		MatchConditions []namedExpression `json:"matchConditions"`
		Variables       []namedExpression `json:"variables"`
		Validations     []namedExpression `json:"validations"`
	} `json:"spec"`
}

type testCase struct {
	Name      string              `json:"name"`
	Operation string              `json:"operation"`
	Username  string              `json:"username"`
	Extra     map[string][]string `json:"extra"`
	Object    any                 `json:"object"`
	OldObject any                 `json:"oldObject"`
	Expect    string              `json:"expect"`
	// When set, a denial must give a reason containing it.
	ExpectReason string `json:"expectReason"`
}

type input struct {
	Policy policy     `json:"policy"`
	Cases  []testCase `json:"cases"`
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "vap-cel: "+format+"\n", args...)
	os.Exit(2)
}

func compile(env *cel.Env, what, expression string) cel.Program {
	ast, issues := env.Compile(expression)
	if issues != nil && issues.Err() != nil {
		fail("%s %q: %v", what, expression, issues.Err())
	}
	program, err := env.Program(ast)
	if err != nil {
		fail("%s %q: %v", what, expression, err)
	}
	return program
}

// decide returns whether the policy allows the request, and why.
func decide(env *cel.Env, p policy, c testCase) (bool, string) {
	extra := map[string]any{}
	for k, v := range c.Extra {
		values := make([]any, len(v))
		for i, s := range v {
			values[i] = s
		}
		extra[k] = values
	}
	variables := map[string]any{}
	activation := map[string]any{
		"request": map[string]any{
			"operation": c.Operation,
			"userInfo":  map[string]any{"username": c.Username, "extra": extra},
		},
		"object":    c.Object,
		"oldObject": c.OldObject,
		"variables": variables,
	}
	for _, m := range p.Spec.MatchConditions {
		out, _, err := compile(env, "matchCondition "+m.Name, m.Expression).Eval(activation)
		if err != nil {
			return false, "matchCondition " + m.Name + " failed: " + err.Error()
		}
		if matched, ok := out.Value().(bool); !ok || !matched {
			return true, "matchCondition " + m.Name + " is false: the policy does not apply"
		}
	}
	for _, v := range p.Spec.Variables {
		out, _, err := compile(env, "variable "+v.Name, v.Expression).Eval(activation)
		if err != nil {
			return false, "variable " + v.Name + " failed: " + err.Error()
		}
		variables[v.Name] = out
	}
	for _, v := range p.Spec.Validations {
		out, _, err := compile(env, "validation", v.Expression).Eval(activation)
		if err != nil {
			return false, "validation " + v.Expression + " failed: " + err.Error()
		}
		if ok, isBool := out.Value().(bool); isBool && ok {
			continue
		}
		message := v.Message
		if v.MessageExpression != "" {
			if m, _, err := compile(env, "messageExpression", v.MessageExpression).Eval(activation); err == nil {
				message = fmt.Sprint(m.Value())
			}
		}
		if message == "" {
			message = "failed expression: " + v.Expression
		}
		return false, message
	}
	return true, "every validation holds"
}

func main() {
	var in input
	if err := json.NewDecoder(os.Stdin).Decode(&in); err != nil {
		fail("input: %v", err)
	}
	if len(in.Policy.Spec.Validations) == 0 || len(in.Cases) == 0 {
		fail("input: a policy with validations and at least one case are needed")
	}
	env, err := cel.NewEnv(
		cel.Variable("request", cel.DynType),
		cel.Variable("object", cel.DynType),
		cel.Variable("oldObject", cel.DynType),
		cel.Variable("variables", cel.MapType(cel.StringType, cel.DynType)),
	)
	if err != nil {
		fail("CEL environment: %v", err)
	}
	passed, failed := 0, 0
	for _, c := range in.Cases {
		if c.Expect != "allow" && c.Expect != "deny" {
			fail("case %q: expect must be allow or deny, not %q", c.Name, c.Expect)
		}
		allowed, why := decide(env, in.Policy, c)
		outcome := map[bool]string{true: "allowed", false: "denied"}[allowed]
		verdict := "PASS"
		wrongReason := !allowed && c.ExpectReason != "" && !strings.Contains(why, c.ExpectReason)
		if allowed != (c.Expect == "allow") || wrongReason {
			verdict = "FAIL"
			failed++
		} else {
			passed++
		}
		fmt.Printf("%s %s: %s (%s)\n", verdict, c.Name, outcome, why)
	}
	fmt.Printf("policy cases: %d as expected, %d not\n", passed, failed)
	if failed > 0 {
		os.Exit(1)
	}
}
