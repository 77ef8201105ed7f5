// chart-render renders a Helm chart the way `helm template` does, without helm.
//
// Helm is not installable on our build machines, so the chart tests (test/chart) render the chart
// with this program instead: Go text/template plus sprig is Helm's own template engine, and this
// file adds the few functions and objects Helm puts on top of it (include, tpl, toYaml, fromYaml,
// toJson, fromJson, required, fail, lookup, .Values, .Release, .Chart, .Capabilities, .Template).
// Values are merged like Helm: the chart's values.yaml, then each -f file in order, then each
// --set. Schema validation (values.schema.json) is done by the caller (test/chart uses
// python3-jsonschema on the merged values this program prints with --print-values).
//
// Build (GOPATH mode, Debian packages only):
//
//	GO111MODULE=off GOPATH=$PWD/gopath:/usr/share/gocode go build -o chart-render ./tools/chart-render
//
// Usage:
//
//	chart-render [--name R] [--namespace NS] [--kube-version v1.34.2] [--api-versions g/v]...
//	             [-f values.yaml]... [--set k=v]... [--set-string k=v]...
//	             [--notes | --print-values] CHART_DIR
//
// Output: every rendered template as "---\n# Source: <chart>/templates/<file>\n<body>"; templates
// whose output is blank are left out, files named _*.tpl are helpers only and NOTES.txt is
// printed only with --notes. Exit status 1 with the template error (e.g. a `fail` message).
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"text/template"

	"github.com/Masterminds/sprig"
	"sigs.k8s.io/yaml"
)

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

// capabilities mirrors the parts of Helm's .Capabilities a chart may use.
type kubeVersion struct {
	Version    string
	Major      string
	Minor      string
	GitVersion string
}

func (k kubeVersion) String() string { return k.Version }

type apiVersions []string

// Has reports whether "group/version" or "group/version/Kind" is available, like Helm's.
func (a apiVersions) Has(v string) bool {
	for _, x := range a {
		if x == v {
			return true
		}
	}
	return false
}

type capabilities struct {
	KubeVersion kubeVersion
	APIVersions apiVersions
}

// The built-in API groups a 1.34+ cluster serves; --api-versions adds more (e.g. monitoring.coreos.com/v1).
var defaultAPIVersions = []string{
	"v1", "apps/v1", "rbac.authorization.k8s.io/v1", "resource.k8s.io/v1",
	"admissionregistration.k8s.io/v1", "scheduling.k8s.io/v1", "policy/v1",
}

func main() {
	var valueFiles, sets, setStrings, extraAPIs multiFlag
	name := flag.String("name", "efa-dra-driver", "release name (.Release.Name)")
	namespace := flag.String("namespace", "kube-system", "release namespace (.Release.Namespace)")
	kubeVer := flag.String("kube-version", "v1.34.2", "Kubernetes version for .Capabilities.KubeVersion")
	notes := flag.Bool("notes", false, "render NOTES.txt only")
	printValues := flag.Bool("print-values", false, "print the merged values as JSON and exit")
	flag.Var(&valueFiles, "f", "values file (repeatable, later wins)")
	flag.Var(&sets, "set", "key=value (repeatable; a.b=c, a[0]=c; typed: bool, int, null)")
	flag.Var(&setStrings, "set-string", "key=value kept as a string (repeatable)")
	flag.Var(&extraAPIs, "api-versions", "extra API version for .Capabilities.APIVersions (repeatable)")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: chart-render [flags] CHART_DIR")
		os.Exit(2)
	}
	if err := run(flag.Arg(0), *name, *namespace, *kubeVer, valueFiles, sets, setStrings,
		append(append(apiVersions{}, defaultAPIVersions...), extraAPIs...), *notes, *printValues); err != nil {
		fmt.Fprintln(os.Stderr, "Error:", err)
		os.Exit(1)
	}
}

func run(chartDir, name, namespace, kubeVer string, valueFiles, sets, setStrings []string,
	apis apiVersions, notes, printValues bool) error {
	chartMeta, err := readYAMLMap(filepath.Join(chartDir, "Chart.yaml"))
	if err != nil {
		return err
	}
	chartName, _ := chartMeta["name"].(string)
	if chartName == "" {
		return fmt.Errorf("%s/Chart.yaml: no name", chartDir)
	}
	values, err := loadValues(chartDir, valueFiles, sets, setStrings)
	if err != nil {
		return err
	}
	if printValues {
		out, err := json.MarshalIndent(values, "", "  ")
		if err != nil {
			return err
		}
		fmt.Println(string(out))
		return nil
	}
	kv, err := parseKubeVersion(kubeVer)
	if err != nil {
		return err
	}
	top := map[string]interface{}{
		"Values": values,
		"Release": map[string]interface{}{
			"Name": name, "Namespace": namespace, "Service": "Helm",
			"IsInstall": true, "IsUpgrade": false, "Revision": 1,
		},
		"Chart":        chartObject(chartMeta),
		"Capabilities": capabilities{KubeVersion: kv, APIVersions: apis},
		"Files":        map[string]interface{}{},
	}
	return render(chartDir, chartName, top, notes)
}

// chartObject turns Chart.yaml keys into Helm's .Chart fields (name -> Name, appVersion -> AppVersion).
func chartObject(meta map[string]interface{}) map[string]interface{} {
	out := map[string]interface{}{}
	for k, v := range meta {
		if k == "" {
			continue
		}
		out[strings.ToUpper(k[:1])+k[1:]] = v
	}
	return out
}

func parseKubeVersion(v string) (kubeVersion, error) {
	m := regexp.MustCompile(`^v?(\d+)\.(\d+)(\.\d+)?`).FindStringSubmatch(v)
	if m == nil {
		return kubeVersion{}, fmt.Errorf("--kube-version %q: want vMAJOR.MINOR[.PATCH]", v)
	}
	gv := v
	if !strings.HasPrefix(gv, "v") {
		gv = "v" + gv
	}
	return kubeVersion{Version: gv, Major: m[1], Minor: m[2], GitVersion: gv}, nil
}

func readYAMLMap(path string) (map[string]interface{}, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	out := map[string]interface{}{}
	if err := yaml.Unmarshal(data, &out); err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	return out, nil
}

func loadValues(chartDir string, files, sets, setStrings []string) (map[string]interface{}, error) {
	values, err := readYAMLMap(filepath.Join(chartDir, "values.yaml"))
	if err != nil {
		return nil, err
	}
	for _, f := range files {
		override, err := readYAMLMap(f)
		if err != nil {
			return nil, err
		}
		values = mergeValues(values, override)
	}
	for _, s := range sets {
		if err := applySet(values, s, false); err != nil {
			return nil, err
		}
	}
	for _, s := range setStrings {
		if err := applySet(values, s, true); err != nil {
			return nil, err
		}
	}
	return values, nil
}

// mergeValues deep-merges override into base like Helm: maps merge key by key, anything else
// replaces, and a null in the override deletes the key.
func mergeValues(base, override map[string]interface{}) map[string]interface{} {
	for k, v := range override {
		if v == nil {
			delete(base, k)
			continue
		}
		if om, ok := v.(map[string]interface{}); ok {
			if bm, ok := base[k].(map[string]interface{}); ok {
				base[k] = mergeValues(bm, om)
				continue
			}
		}
		base[k] = v
	}
	return base
}

var indexRE = regexp.MustCompile(`^([^\[\]]+)\[(\d+)\]$`)

// applySet handles Helm's --set syntax: comma-separated key=value pairs, dotted keys (a
// backslash escapes a dot), list indexes (a[0]), and typed scalars unless asString.
func applySet(values map[string]interface{}, expr string, asString bool) error {
	for _, pair := range splitUnescaped(expr, ',') {
		eq := strings.Index(pair, "=")
		if eq <= 0 {
			return fmt.Errorf("--set %q: want key=value", pair)
		}
		keys := splitUnescaped(pair[:eq], '.')
		var val interface{} = pair[eq+1:]
		if !asString {
			val = typedScalar(pair[eq+1:])
		}
		if err := setPath(values, keys, val); err != nil {
			return fmt.Errorf("--set %q: %v", pair, err)
		}
	}
	return nil
}

func splitUnescaped(s string, sep byte) []string {
	var parts []string
	var cur strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) && s[i+1] == sep {
			cur.WriteByte(sep)
			i++
			continue
		}
		if s[i] == sep {
			parts = append(parts, cur.String())
			cur.Reset()
			continue
		}
		cur.WriteByte(s[i])
	}
	return append(parts, cur.String())
}

func typedScalar(s string) interface{} {
	switch s {
	case "true":
		return true
	case "false":
		return false
	case "null":
		return nil
	}
	if i, err := strconv.ParseInt(s, 10, 64); err == nil {
		return i
	}
	return s
}

func setPath(m map[string]interface{}, keys []string, val interface{}) error {
	key := keys[0]
	idx := -1
	if sub := indexRE.FindStringSubmatch(key); sub != nil {
		key = sub[1]
		idx, _ = strconv.Atoi(sub[2])
	}
	last := len(keys) == 1
	if idx < 0 {
		if last {
			if val == nil {
				delete(m, key)
			} else {
				m[key] = val
			}
			return nil
		}
		child, ok := m[key].(map[string]interface{})
		if !ok {
			child = map[string]interface{}{}
			m[key] = child
		}
		return setPath(child, keys[1:], val)
	}
	list, _ := m[key].([]interface{})
	for len(list) <= idx {
		list = append(list, nil)
	}
	if last {
		list[idx] = val
	} else {
		child, ok := list[idx].(map[string]interface{})
		if !ok {
			child = map[string]interface{}{}
		}
		if err := setPath(child, keys[1:], val); err != nil {
			return err
		}
		list[idx] = child
	}
	m[key] = list
	return nil
}

// funcMap is sprig plus the functions Helm adds; include and tpl need the template set.
func funcMap(root **template.Template) template.FuncMap {
	f := sprig.TxtFuncMap()
	delete(f, "env")
	delete(f, "expandenv")
	f["toYaml"] = func(v interface{}) string {
		out, err := yaml.Marshal(v)
		if err != nil {
			return ""
		}
		return strings.TrimSuffix(string(out), "\n")
	}
	f["fromYaml"] = func(s string) map[string]interface{} {
		m := map[string]interface{}{}
		if err := yaml.Unmarshal([]byte(s), &m); err != nil {
			m["Error"] = err.Error()
		}
		return m
	}
	f["fromYamlArray"] = func(s string) []interface{} {
		var a []interface{}
		if err := yaml.Unmarshal([]byte(s), &a); err != nil {
			a = []interface{}{err.Error()}
		}
		return a
	}
	f["toJson"] = func(v interface{}) string {
		out, err := json.Marshal(v)
		if err != nil {
			return ""
		}
		return string(out)
	}
	f["fromJson"] = func(s string) map[string]interface{} {
		m := map[string]interface{}{}
		if err := json.Unmarshal([]byte(s), &m); err != nil {
			m["Error"] = err.Error()
		}
		return m
	}
	f["required"] = func(msg string, v interface{}) (interface{}, error) {
		if v == nil {
			return v, errors.New(msg)
		}
		if s, ok := v.(string); ok && s == "" {
			return v, errors.New(msg)
		}
		return v, nil
	}
	f["fail"] = func(msg string) (string, error) { return "", errors.New(msg) }
	// No cluster here: lookup finds nothing, as with `helm template`.
	f["lookup"] = func(string, string, string, string) (map[string]interface{}, error) {
		return map[string]interface{}{}, nil
	}
	f["include"] = func(name string, data interface{}) (string, error) {
		var buf bytes.Buffer
		if err := (*root).ExecuteTemplate(&buf, name, data); err != nil {
			return "", err
		}
		return buf.String(), nil
	}
	f["tpl"] = func(text string, data interface{}) (string, error) {
		t, err := (*root).Clone()
		if err != nil {
			return "", err
		}
		t, err = t.New("tpl").Parse(text)
		if err != nil {
			return "", err
		}
		var buf bytes.Buffer
		if err := t.Execute(&buf, data); err != nil {
			return "", err
		}
		return strings.ReplaceAll(buf.String(), "<no value>", ""), nil
	}
	return f
}

func render(chartDir, chartName string, top map[string]interface{}, notes bool) error {
	tdir := filepath.Join(chartDir, "templates")
	var files []string
	err := filepath.Walk(tdir, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if !info.IsDir() {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		return err
	}
	sort.Strings(files)
	var root *template.Template
	root = template.New(chartName).Funcs(funcMap(&root)).Option("missingkey=zero")
	var names []string
	for _, p := range files {
		rel, _ := filepath.Rel(chartDir, p)
		tname := chartName + "/" + filepath.ToSlash(rel)
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if _, err := root.New(tname).Parse(string(data)); err != nil {
			return err
		}
		base := filepath.Base(p)
		isNotes := base == "NOTES.txt"
		if strings.HasPrefix(base, "_") || isNotes != notes {
			continue
		}
		names = append(names, tname)
	}
	var out bytes.Buffer
	for _, tname := range names {
		vals := map[string]interface{}{}
		for k, v := range top {
			vals[k] = v
		}
		vals["Template"] = map[string]interface{}{"Name": tname, "BasePath": chartName + "/templates"}
		var buf bytes.Buffer
		if err := root.ExecuteTemplate(&buf, tname, vals); err != nil {
			return err
		}
		body := strings.ReplaceAll(buf.String(), "<no value>", "")
		if strings.TrimSpace(body) == "" {
			continue
		}
		if notes {
			out.WriteString(body)
			continue
		}
		fmt.Fprintf(&out, "---\n# Source: %s\n%s\n", tname, strings.TrimRight(body, "\n"))
	}
	_, err = os.Stdout.Write(out.Bytes())
	return err
}
