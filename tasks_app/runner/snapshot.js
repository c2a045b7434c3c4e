// In-page helpers of the runner, evaluated as one expression that yields the ANCHOR object.
// Property names follow DESIGN.md §4 (the Similo locator-repair data): tag, id, name, class, type,
// href, alt, text, visible_text, xpath, idxpath, x, y, width, height, area, shape, is_button,
// neighbor_text, plus aria_label, role, placeholder, title, value, data_testid.
// Kept cheap: fingerprint() runs once per element step and must cost well under a millisecond.
(() => {
  // @core-begin (fingerprint() and its helpers: sent alone with every element step)
  const REFS = "__anchorRefs";
  const TESTID_ATTRS = ["data-testid", "data-test-id", "data-test", "data-qa", "data-cy"];
  const norm = (s) => (s == null ? "" : String(s)).replace(/\s+/g, " ").trim();
  const cap = (s, n) => (s.length > n ? s.slice(0, n) : s);
  const NEIGHBOR_MAX_CHILDREN = 200;
  const MAX_OPTIONS = 250;  // a country list fits; a select of thousands is not recorded whole

  // The parent in the composed tree: through an (open) shadow root to its host, so that an element of a
  // web component has a path like any other.
  const parentOf = (n) => n.parentElement || (n.parentNode && n.parentNode.host) || null;

  function xpath(el) {
    const parts = [];
    for (let n = el; n && n.nodeType === 1; n = parentOf(n)) {
      let i = 1;
      for (let s = n.previousElementSibling; s; s = s.previousElementSibling) {
        if (s.tagName === n.tagName) i++;
      }
      parts.unshift(n.tagName.toLowerCase() + "[" + i + "]");
    }
    return "/" + parts.join("/");
  }

  function idxpath(el) {
    const parts = [];
    for (let n = el; n && n.nodeType === 1; n = parentOf(n)) {
      if (n.id && n !== document.documentElement && n !== document.body) {
        return "//*[@id='" + n.id + "']" + (parts.length ? "/" + parts.join("/") : "");
      }
      let i = 1;
      for (let s = n.previousElementSibling; s; s = s.previousElementSibling) {
        if (s.tagName === n.tagName) i++;
      }
      parts.unshift(n.tagName.toLowerCase() + "[" + i + "]");
    }
    return "/" + parts.join("/");
  }

  function implicitRole(el) {
    const tag = el.tagName.toLowerCase();
    const type = (el.getAttribute("type") || "").toLowerCase();
    switch (tag) {
      case "a": return el.hasAttribute("href") ? "link" : "";
      case "button": return "button";
      case "select": return el.multiple || el.size > 1 ? "listbox" : "combobox";
      case "textarea": return "textbox";
      case "img": return el.getAttribute("alt") === "" ? "presentation" : "img";
      case "h1": case "h2": case "h3": case "h4": case "h5": case "h6": return "heading";
      case "li": return "listitem";
      case "ul": case "ol": return "list";
      case "nav": return "navigation";
      case "form": return "form";
      case "table": return "table";
      case "tr": return "row";
      case "td": return "cell";
      case "th": return "columnheader";
      case "option": return "option";
      case "dialog": return "dialog";
      case "summary": return "button";
      case "input":
        if (["button", "submit", "reset", "image"].includes(type)) return "button";
        if (type === "checkbox") return "checkbox";
        if (type === "radio") return "radio";
        if (type === "range") return "slider";
        if (type === "number") return "spinbutton";
        if (type === "search") return "searchbox";
        if (type === "hidden" || type === "file" || type === "password" || type === "color" || type === "date") return "";
        return "textbox";
    }
    return "";
  }
  const roleOf = (el) => norm(el.getAttribute("role")).split(" ")[0] || implicitRole(el);

  function labelText(el) {
    if (el.labels && el.labels.length) return norm(el.labels[0].innerText || el.labels[0].textContent);
    return "";
  }

  function accName(el) {
    const aria = norm(el.getAttribute("aria-label"));
    if (aria) return aria;
    const by = el.getAttribute("aria-labelledby");
    if (by) {
      const t = by.split(/\s+/).map((id) => document.getElementById(id)).filter(Boolean)
        .map((n) => norm(n.innerText || n.textContent)).join(" ");
      if (t) return norm(t);
    }
    const tag = el.tagName.toLowerCase();
    if (tag === "input" || tag === "textarea" || tag === "select") {
      const type = (el.getAttribute("type") || "").toLowerCase();
      if (["button", "submit", "reset"].includes(type)) return norm(el.value) || (type === "submit" ? "Submit" : type === "reset" ? "Reset" : "");
      if (type === "image") return norm(el.getAttribute("alt"));
      return labelText(el) || norm(el.getAttribute("title")) || norm(el.getAttribute("placeholder"));
    }
    if (tag === "img") return norm(el.getAttribute("alt")) || norm(el.getAttribute("title"));
    const text = norm(el.innerText || el.textContent);
    return text || norm(el.getAttribute("title"));
  }

  function isVisible(el) {
    if (el.checkVisibility && !el.checkVisibility({ visibilityProperty: true, opacityProperty: false })) return false;
    const r = el.getBoundingClientRect();
    return r.width > 0 && r.height > 0;
  }

  function isButton(el) {
    const tag = el.tagName.toLowerCase();
    const type = (el.getAttribute("type") || "").toLowerCase();
    return tag === "button" || (tag === "input" && ["button", "submit", "reset", "image"].includes(type)) ||
      el.getAttribute("role") === "button";
  }

  function ownText(el) {
    let t = "";
    for (const c of el.childNodes) if (c.nodeType === 3) t += c.nodeValue;
    return norm(t);
  }

  function neighborText(el) {
    // The closest text around the element that is not its own: label, siblings, then ancestors.
    const own = norm(el.innerText || el.textContent);
    const lab = labelText(el);
    if (lab && lab !== own) return cap(lab, 120);
    for (const sib of [el.previousElementSibling, el.nextElementSibling]) {
      if (sib) {
        const t = norm(sib.innerText || sib.textContent);
        if (t && t !== own) return cap(t, 120);
      }
    }
    let n = el.parentElement;
    for (let i = 0; n && i < 3 && n !== document.body; i++, n = n.parentElement) {
      // A container of many elements (a long list, a big table) is not "next to" anything, and reading
      // its whole text for each of its children made observe() quadratic on huge pages.
      if (n.childElementCount > NEIGHBOR_MAX_CHILDREN) break;
      const t = norm(n.innerText || n.textContent).replace(own, " ").trim();
      if (t) return cap(norm(t), 120);
    }
    return "";
  }

  function fingerprint(el) {
    if (!el || el.nodeType !== 1) return null;
    const r = el.getBoundingClientRect();
    const text = cap(norm(el.innerText || el.textContent), 200);
    const fp = {
      tag: el.tagName.toUpperCase(),
      text,
      visible_text: isVisible(el) ? text : "",
      xpath: xpath(el),
      idxpath: idxpath(el),
      x: Math.round(r.left + window.scrollX),
      y: Math.round(r.top + window.scrollY),
      width: Math.round(r.width),
      height: Math.round(r.height),
      area: Math.round(r.width * r.height),
      shape: r.height > 0 ? Math.round((r.width * 100) / r.height) : 0,
      is_button: isButton(el) ? "yes" : "no",
      neighbor_text: neighborText(el),
      role: roleOf(el),
    };
    const attrs = { id: "id", name: "name", class: "class", type: "type", href: "href", alt: "alt",
      placeholder: "placeholder", title: "title", "aria-label": "aria_label" };
    for (const [a, k] of Object.entries(attrs)) {
      const v = el.getAttribute(a);
      if (v != null && v !== "") fp[k] = cap(norm(v), 300);
    }
    for (const a of TESTID_ATTRS) {
      const v = el.getAttribute(a);
      if (v) { fp.data_testid = v; break; }
    }
    const tag = fp.tag;
    if ((tag === "INPUT" || tag === "SELECT" || tag === "TEXTAREA" || tag === "BUTTON" || tag === "OPTION") &&
        el.value != null && el.value !== "" && (el.getAttribute("type") || "").toLowerCase() !== "password") {
      fp.value = cap(String(el.value), 200);
    }
    if (tag === "SELECT") fp.options = optionsOf(el);
    // The form the element belongs to (a form= attribute included), by its place, id, name and where it posts: a
    // look-alike of another form on the page (a newsletter's "Send" beside the contact form's) is told from it by
    // that. `el.form` of a <form> is one of its fields named "form", so a form is never its own element's form.
    const owner = el.form instanceof HTMLFormElement ? el.form : tag === "FORM" ? null : el.closest("form");
    if (owner) {
      fp.form_xpath = xpath(owner);
      fp.form_id = cap(owner.id || "", 200);
      fp.form_name = cap(owner.getAttribute("name") || "", 200);
      fp.form_action = cap(owner.getAttribute("action") || "", 300);
    }
    return fp;
  }

  // A select's options as [value, label] pairs: a later run whose value is gone finds its option by the label.
  function optionsOf(select) {
    return Array.from(select.options).slice(0, MAX_OPTIONS).map((o) => [cap(o.value, 80), cap(norm(o.label), 80)]);
  }
  // @core-end

  // Whether `outer` is `inner` or holds it, across shadow roots (Node.contains stops at them).
  function holds(outer, inner) {
    for (let n = inner; n; n = parentOf(n)) if (n === outer) return true;
    return false;
  }

  // Every element under `root`, open shadow roots included (a web component's button is as clickable as any).
  function* deepElements(root) {
    for (const el of root.querySelectorAll("*")) {
      yield el;
      if (el.shadowRoot) yield* deepElements(el.shadowRoot);
    }
  }

  // Every open shadow root of the page (finding them walks the whole page: do it once per snapshot).
  function shadowRoots() {
    const roots = [];
    for (const el of deepElements(document)) if (el.shadowRoot) roots.push(el.shadowRoot);
    return roots;
  }

  // document.querySelectorAll, and the same inside every open shadow root.
  function deepQueryAll(selector, roots = shadowRoots()) {
    const found = [...document.querySelectorAll(selector)];
    for (const root of roots) found.push(...root.querySelectorAll(selector));
    return found;
  }

  function captcha() {
    for (const f of document.querySelectorAll("iframe")) {
      const src = (f.getAttribute("src") || "") + " " + (f.getAttribute("title") || "");
      if (f.closest(".grecaptcha-badge")) continue; // invisible reCAPTCHA v3 badge: not a challenge
      const r = f.getBoundingClientRect();
      if (r.width < 30 || r.height < 30) continue;
      if (/recaptcha/i.test(src)) return "recaptcha";
      if (/hcaptcha/i.test(src)) return "hcaptcha";
      if (/challenges\.cloudflare\.com|turnstile/i.test(src)) return "turnstile";
      if (/captcha|arkoselabs|funcaptcha/i.test(src)) return "captcha";
    }
    const widgets = [[".g-recaptcha, #recaptcha, [data-recaptcha]", "recaptcha"], [".h-captcha, [data-hcaptcha-widget-id]", "hcaptcha"],
      [".cf-turnstile, #challenge-form, #cf-challenge-running, #challenge-stage", "turnstile"]];
    for (const [sel, kind] of widgets) {
      const el = document.querySelector(sel);
      if (el && isVisible(el)) return kind;
    }
    const sk = document.querySelector("[data-sitekey]");
    if (sk && isVisible(sk)) return "captcha";
    const body = document.body ? cap(document.body.innerText || "", 5000) : "";
    if (/verify (that )?you are (a )?human|i'?m not a robot|are you a robot|checking (if the site connection is secure|your browser)|complete the security check|press (&|and) hold/i.test(body)) {
      return "challenge";
    }
    return null;
  }

  function passwordVisible(roots) {
    for (const el of deepQueryAll("input[type=password]", roots)) if (isVisible(el)) return true;
    return false;
  }

  function pageState(roots = shadowRoots()) {
    let status = null;
    try {
      const nav = performance.getEntriesByType("navigation")[0];
      if (nav && nav.responseStatus) status = nav.responseStatus;
    } catch (e) { /* old engines */ }
    const pw = passwordVisible(roots);
    const body = document.body ? cap(document.body.innerText || "", 5000) : "";
    const busyEl = document.querySelector("[aria-busy=true], .spinner, .loading, .loader, [role=progressbar], .skeleton");
    return {
      url: location.href,
      title: document.title,
      readyState: document.readyState,
      http_status: status,
      password_visible: pw,
      login_form: pw,
      captcha: captcha(),
      busy: !!(busyEl && isVisible(busyEl)) || /^\s*loading(\.\.\.|…)?\s*$/i.test(body),
      auth_error_text: /invalid (username|password|credentials|login)|incorrect (username|password|email)|wrong password|login failed|authentication failed|session (has )?expired/i.test(body),
    };
  }

  function isInteractable(el) {
    const tag = el.tagName;
    if (["A", "BUTTON", "INPUT", "SELECT", "TEXTAREA", "SUMMARY", "LABEL", "OPTION"].includes(tag)) return true;
    if (el.hasAttribute("onclick") || el.isContentEditable || el.hasAttribute("tabindex")) return true;
    const role = el.getAttribute("role");
    return !!role && /button|link|checkbox|radio|tab|menuitem|option|switch|textbox|combobox|searchbox/.test(role);
  }

  function observe(maxElements) {
    const max = maxElements || 3000;
    // However odd the page, an observation answers in bounded time (the agent works with what it got).
    const deadline = performance.now() + 10000;
    const refs = [];
    const elements = [];
    const hidden = [];
    const all = document.body ? deepElements(document.body) : [];
    const describe = (el, visible, interactable) => {
      const fp = fingerprint(el);
      fp.visible = visible;
      fp.enabled = !(el.disabled || el.getAttribute("aria-disabled") === "true");
      fp.interactable = interactable;
      fp.ref = refs.push(el) - 1;
      const name = accName(el);
      if (name) fp.name_text = cap(name, 200);
      const popup = el.getAttribute("aria-haspopup");
      if (popup && popup !== "false") fp.haspopup = popup === "true" ? "menu" : popup;
      return fp;
    };
    for (const el of all) {
      if (elements.length >= max || performance.now() > deadline) break;
      if (["SCRIPT", "STYLE", "NOSCRIPT", "TEMPLATE", "META", "LINK", "HEAD"].includes(el.tagName)) continue;
      const interactable = isInteractable(el);
      if (!interactable && !ownText(el)) continue;
      if (isVisible(el)) elements.push(describe(el, true, interactable));
      else if (interactable && hidden.length < MAX_HIDDEN_CHECKED && mayBeInClosedSection(el)) hidden.push(el);
    }
    // Links and buttons of closed menus, each with the visible element that opens its menu (`opened_by`, a ref):
    // a redesign that tucks a link into a drop-down leaves it one hover or click away, not gone.
    const inClosedMenus = [];
    const openers = new Map();
    for (const el of hidden) {
      if (inClosedMenus.length >= MAX_MENU_ITEMS || performance.now() > deadline) break;
      const opener = menuOpener(el, openers);
      if (!opener) continue;
      const fp = describe(el, false, true);
      const known = refs.indexOf(opener.el);
      fp.opened_by = known >= 0 ? known : refs.push(opener.el) - 1;
      fp.opener_clicks = opener.clicks;
      fp.opener_text = cap(norm(accName(opener.el) || opener.el.innerText || ""), 80);
      inClosedMenus.push(fp);
    }
    window[REFS] = refs;
    const links = [];
    const roots = shadowRoots();
    for (const a of deepQueryAll("a[href]", roots)) {
      if (links.length >= 500) break;
      if (!isVisible(a)) continue;
      links.push({ text: cap(norm(a.innerText || a.textContent), 120), href: a.href, ref: refs.indexOf(a) });
    }
    const forms = [];
    for (const f of deepQueryAll("form", roots)) {
      if (forms.length >= 50) break;
      const inputs = [];
      for (const i of f.querySelectorAll("input, select, textarea")) {
        if ((i.type || "") === "hidden") continue;
        inputs.push({ tag: i.tagName.toLowerCase(), type: i.getAttribute("type") || "", name: i.getAttribute("name") || "",
          autocomplete: i.getAttribute("autocomplete") || "",
          id: i.id || "", label: labelText(i), placeholder: i.getAttribute("placeholder") || "",
          visible: isVisible(i), ref: refs.indexOf(i) });
      }
      const submits = [];
      for (const b of f.querySelectorAll("button, input[type=submit], input[type=image]")) {
        submits.push({ text: accName(b), id: b.id || "", name: b.getAttribute("name") || "", visible: isVisible(b), ref: refs.indexOf(b) });
      }
      forms.push({ id: f.id || "", xpath: xpath(f), name: f.getAttribute("name") || "", action: f.getAttribute("action") || "",
        method: (f.getAttribute("method") || "get").toLowerCase(), inputs, submits });
    }
    const state = pageState(roots);
    return Object.assign(state, {
      elements,
      in_closed_menus: inClosedMenus,
      links,
      forms,
      frames: framesOf(),
      text_excerpt: document.body ? cap(norm(document.body.innerText), 4000) : "",
    });
  }

  // Hidden elements worth asking what opens them: links, buttons and form fields (a redesign may fold a form into
  // an accordion or a tab), not options and labels (their select or field stands for them) nor an
  // <input type=hidden>, which nothing opens.
  function mayBeInClosedSection(el) {
    if (el.tagName === "OPTION" || el.tagName === "LABEL") return false;
    return el.tagName !== "INPUT" || (el.getAttribute("type") || "").toLowerCase() !== "hidden";
  }

  // How far above a hidden link its menu's visible owner may be (a > li > ul > div.dropdown > li.nav-item).
  const MENU_DEPTH = 5;
  const MAX_MENU_ITEMS = 300;
  const MAX_HIDDEN_CHECKED = 3000;
  const DISCLOSURE = "[aria-expanded], [aria-haspopup]:not([aria-haspopup=false]), summary";

  // What opens the closed menu that hides `el`, as {el, clicks}; null when `el` is hidden for another reason (a
  // hidden page section, a closed dialog nothing names). The menu is the outermost hidden ancestor under a visible
  // owner; its opener is a control that names it (namingOpener), else the owner's disclosure control
  // (aria-expanded, aria-haspopup, a <details> summary), which a click may toggle, or the Next button of a form in
  // steps (nextStepButton), or, in a small owner (an <li>
  // holding a link and its menu, as CSS :hover drop-downs are built), the owner's one other visible link or button,
  // which is only hovered: a click on a link would leave the page. A closed dialog right under the body has no
  // owner: only a control that names it opens it.
  // `known` remembers each menu's answer: the items of one menu share it (and a big page has many).
  function menuOpener(el, known) {
    let menu = el;
    for (let depth = 0; depth < MENU_DEPTH; depth++) {
      const owner = parentOf(menu);
      if (!owner || owner === document.documentElement) return null;
      if (owner === document.body) {
        if (!known.has(menu)) known.set(menu, namingOpener(menu));
        return known.get(menu);
      }
      if (!isVisible(owner)) { menu = owner; continue; }
      if (!known.has(menu)) known.set(menu, openerOf(menu, owner));
      return known.get(menu);
    }
    return null;
  }

  // A visible control anywhere in the page that names `menu` by its id as what it opens, as {el, clicks: true}:
  // aria-controls, Bootstrap's data-bs-target (data-target before version 5), or a link to it ("#contact-form").
  // A modal dialog's opener is seldom beside it. Null when `menu` has no id or nothing names it.
  function namingOpener(menu) {
    if (!menu.id) return null;
    const target = "#" + menu.id;
    const names = (c) => (c.getAttribute("aria-controls") || "").split(/\s+/).includes(menu.id) ||
      c.getAttribute("data-bs-target") === target || c.getAttribute("data-target") === target ||
      c.getAttribute("href") === target;
    const opener = Array.from(document.querySelectorAll("[aria-controls], [data-bs-target], [data-target], a[href^='#']"))
      .find((c) => names(c) && !holds(menu, c) && isVisible(c));
    return opener ? { el: opener, clicks: true } : null;
  }

  // The opener of `menu` (hidden) in `owner` (visible), as menuOpener describes it.
  function openerOf(menu, owner) {
    const outside = (c) => !holds(menu, c) && isVisible(c);
    const named = namingOpener(menu);
    if (named) return named;
    const disclosure = Array.from(owner.querySelectorAll(DISCLOSURE)).find(outside);
    if (disclosure) return { el: disclosure, clicks: true };
    const next = nextStepButton(menu, outside);
    if (next) return { el: next, clicks: true };
    if (owner.children.length > 3) return null;
    const others = Array.from(owner.querySelectorAll("a, button, [role=button], [role=menuitem]")).filter(outside);
    return others.length === 1 ? { el: others[0], clicks: false } : null;
  }

  // A form in steps (a wizard) hides the later steps until its Next button shows them. That button is clicked, not
  // hovered, so only a plain button (not a submit button, which would post the form) counts, named as a step forward
  // and nothing more ("Continue with Google" or "Continue shopping" are other things), enabled, on show, outside
  // `menu` (`outside`), and the only such button of `menu`'s form. Null for a menu in no form.
  const NEXT_STEP = /^(next|continue|weiter|suivant|siguiente|avanti|volgende|próximo|proximo|seguinte)(\s*(step|[→›»>]+))?$|^[→›»>]+$/i;
  function nextStepButton(menu, outside) {
    const form = menu.closest("form");
    if (!form) return null;
    const plain = (b) => (b.tagName === "BUTTON" || b.tagName === "INPUT" ? (b.getAttribute("type") || "").toLowerCase() === "button"
      : !b.hasAttribute("href"));
    const found = Array.from(form.querySelectorAll("button, input[type=button], [role=button]")).filter((b) =>
      outside(b) && plain(b) && !b.disabled && b.getAttribute("aria-disabled") !== "true" &&
      NEXT_STEP.test(norm(accName(b) || b.value || "")));
    return found.length === 1 ? found[0] : null;
  }

  const STABLE_ID = (id) => !!id && !/\d{4,}|[0-9a-f]{8,}|^(ember|react|ng-|:r|mui-|radix-|headlessui-)|^[0-9]/i.test(id) &&
    /^[A-Za-z][\w-]*$/.test(id);
  const q = (s) => JSON.stringify(s);

  // A short CSS path. Inside a shadow root it continues from the host with a descendant combinator, which
  // Playwright's CSS engine lets cross into open shadow roots (">" does not).
  function cssPath(el) {
    let path = "";
    for (let n = el; n && n.nodeType === 1 && n !== document.documentElement; n = parentOf(n)) {
      if (n !== el && STABLE_ID(n.id)) { path = "#" + CSS.escape(n.id) + path; break; }
      let part = n.tagName.toLowerCase();
      const siblings = n.parentElement ? n.parentElement.children : n.parentNode ? n.parentNode.children : [];
      const same = Array.from(siblings).filter((c) => c.tagName === n.tagName);
      if (same.length > 1) part += ":nth-of-type(" + (same.indexOf(n) + 1) + ")";
      path = part + path;
      if (n === document.body) break;
      path = (n.parentElement ? " > " : " ") + path;
    }
    return path;
  }

  function selectorCandidates(el) {
    const out = [];
    for (const a of TESTID_ATTRS) {
      const v = el.getAttribute(a);
      if (v) out.push({ selector: "[" + a + "=" + q(v) + "]", kind: "test_id", attribute: a, value: v });
    }
    const role = roleOf(el);
    const name = accName(el);
    if (role && name && name.length <= 80) {
      out.push({ selector: "role=" + role + "[name=" + q(name) + "s]", kind: "role", role, name });
    }
    if (STABLE_ID(el.id)) out.push({ selector: "#" + CSS.escape(el.id), kind: "id" });
    const tag = el.tagName.toLowerCase();
    for (const a of ["name", "placeholder", "aria-label"]) {
      const v = el.getAttribute(a);
      if (v && v.length <= 80) out.push({ selector: tag + "[" + a + "=" + q(v) + "]", kind: "attribute" });
    }
    // Class names that read like words (not build hashes such as "css-1x2y3z") survive content changes,
    // which matters for steps that read data: a price's text changes, its class does not.
    const classes = Array.from(el.classList).filter((c) => /^[a-zA-Z][a-zA-Z_-]{2,30}$/.test(c)).slice(0, 3);
    if (classes.length) out.push({ selector: tag + "." + classes.map((c) => CSS.escape(c)).join("."), kind: "class" });
    const text = norm(el.innerText || el.textContent);
    if (text && text.length <= 60 && !["INPUT", "SELECT", "TEXTAREA"].includes(el.tagName)) {
      out.push({ selector: "text=" + q(text), kind: "text", text });
    }
    out.push({ selector: cssPath(el), kind: "css" });
    return out;
  }

  function domExcerpt(max) {
    if (!document.documentElement) return "";
    const clone = document.documentElement.cloneNode(true);
    for (const n of clone.querySelectorAll("script, style, noscript, svg, link[rel=stylesheet], template")) n.remove();
    const html = clone.outerHTML.replace(/\s{2,}/g, " ");
    return cap(html, max || 20000);
  }

  // The layer drawn over `el` at its centre (a cookie banner, a modal's backdrop), or null when a click
  // there reaches `el`. The layer is the outermost ancestor of the covering element that does not hold
  // `el`: the whole banner, so that its buttons can be found.
  const LAYERS = "__anchorLayers";
  // With `remember` (the hand-over asking), the record carries a ref that stays the layer's own while it
  // changes (fades out, says "Saving your choices"): the agent tells it from the next layer under it by that.
  function coveringLayer(el, remember = false) {
    const r = el.getBoundingClientRect();
    const x = r.left + r.width / 2, y = r.top + r.height / 2;
    if (r.width <= 0 || r.height <= 0 || x < 0 || y < 0 || x >= innerWidth || y >= innerHeight) return null;
    let hit = document.elementFromPoint(x, y);
    // elementFromPoint answers with a web component's host: look inside it for what is really there.
    for (let inner; hit && hit.shadowRoot && (inner = hit.shadowRoot.elementFromPoint(x, y)) && inner !== hit;) hit = inner;
    if (!hit || holds(el, hit) || holds(hit, el)) return null;
    let layer = hit;
    while (parentOf(layer) && !holds(parentOf(layer), el)) layer = parentOf(layer);
    if (layer === document.body || layer === document.documentElement) return null;
    const selector = layerSelector(layer);
    const record = { tag: layer.tagName.toLowerCase(), id: layer.id || "", class: cap(norm(layer.getAttribute("class")), 80),
      text: cap(norm(layer.innerText || layer.textContent), 120), xpath: xpath(layer), selector,
      frame: layerFrame(layer, hit, selector) };
    if (remember) {
      const seen = window[LAYERS] || (window[LAYERS] = []);
      record.ref = seen.includes(layer) ? seen.indexOf(layer) : seen.push(layer) - 1;
    }
    return record;
  }

  // Consent tools often draw their banner in an iframe, whose buttons are not in this document: a selector for
  // that frame (the one hit, or the layer's only one), or "" when there is none or nothing recognises it.
  function layerFrame(layer, hit, selector) {
    const frames = layer.tagName === "IFRAME" ? [layer] : Array.from(layer.querySelectorAll("iframe"));
    const frame = hit.tagName === "IFRAME" ? hit : frames.length === 1 ? frames[0] : null;
    if (!frame || layer.getRootNode() !== document) return "";
    const title = frame.getAttribute("title");
    const options = [
      frame === layer ? selector : selector && frames.length === 1 ? selector + " iframe" : "",
      layerSelector(frame),
      title ? "iframe[title=" + q(title) + "]" : "",
    ];
    return options.find((sel) => sel && document.querySelectorAll(sel).length === 1) || "";
  }

  // The page's visible iframes, each with a selector that finds it alone by what it is, and the address it shows:
  // a redesign may embed a form as a page of its own, whose fields are then in there.
  function framesOf() {
    const frames = [];
    for (const frame of document.querySelectorAll("iframe")) {
      if (frames.length >= MAX_FRAMES) break;
      const r = frame.getBoundingClientRect();
      if (!isVisible(frame) || r.width < 30 || r.height < 30) continue;
      const options = [layerSelector(frame), ...["title", "name", "src"].map(
        (a) => frame.getAttribute(a) ? "iframe[" + a + "=" + q(frame.getAttribute(a)) + "]" : "")];
      const selector = options.find((sel) => sel && document.querySelectorAll(sel).length === 1);
      if (selector) frames.push({ selector, url: frame.src, title: frame.getAttribute("title") || "" });
    }
    return frames;
  }
  const MAX_FRAMES = 20;

  // A CSS selector that finds the layer alone by what it is (test id, stable id, word-like classes), or "" when
  // it has nothing of the kind: the code that closes it looks for its button inside it, and nowhere else.
  function layerSelector(layer) {
    if (layer.getRootNode() !== document) return "";
    const tag = layer.tagName.toLowerCase();
    const classes = Array.from(layer.classList).filter((c) => /^[a-zA-Z][a-zA-Z_-]{2,30}$/.test(c)).slice(0, 3);
    const options = [
      ...TESTID_ATTRS.filter((a) => layer.getAttribute(a)).map((a) => "[" + a + "=" + q(layer.getAttribute(a)) + "]"),
      STABLE_ID(layer.id) ? "#" + CSS.escape(layer.id) : "",
      classes.length ? tag + "." + classes.map((c) => CSS.escape(c)).join(".") : "",
    ];
    return options.find((sel) => sel && document.querySelectorAll(sel).length === 1) || "";
  }

  // What the classifier needs when an element action failed: how many elements match, whether the
  // first is visible and enabled, what covers it, and the page state.
  function elementEvidence(els) {
    const first = els && els[0];
    const visible = first ? isVisible(first) : null;
    return Object.assign(pageState(), {
      match_count: els ? els.length : 0,
      match_visible: visible,
      match_enabled: first ? !(first.disabled || first.getAttribute("aria-disabled") === "true") : null,
      covered_by: visible ? coveringLayer(first) : null,
      options: first && first.tagName === "SELECT" ? optionsOf(first) : null,
    });
  }

  const ref = (n) => (window[REFS] || [])[n] || null;

  return { fingerprint, pageState, observe, selectorCandidates, domExcerpt, elementEvidence, coveringLayer, ref, accName,
    roleOf };
})()
