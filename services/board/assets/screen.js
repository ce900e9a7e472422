// The waiting-room screen: follows GET /opd/board/events and draws the three queues.
// The browser's EventSource reconnects by itself and sends the last event id, so the
// server sends what was missed; the top edge turns red while no stream is open. Each queue
// holds {token, site, order} in order: `order` is when the token joined it, so a token moved in
// later still takes its place. Tokens count per site: a token is its number and its site, and
// while tokens of more than one site are on the board, each shows its site's name.
"use strict";

(() => {
  const stages = ["inspection", "treatment", "release"];
  const queues = new Map(stages.map((stage) => [stage, []]));
  const called = new Map();
  const board = document.getElementById("board");

  const same = (a, b) => a.token === b.token && a.site === b.site;

  // Writes a token into `element`: its number, and its site's name when `named`.
  function show(element, ticket, named) {
    element.dataset.token = String(ticket.token);
    element.dataset.site = ticket.site;
    element.textContent = String(ticket.token);
    if (named) {
      const site = document.createElement("small");
      site.className = "site";
      site.textContent = ticket.site;
      element.append(site);
    }
  }

  function draw() {
    const sites = new Set();
    for (const places of queues.values()) for (const place of places) sites.add(place.site);
    for (const ticket of called.values()) sites.add(ticket.site);
    const named = sites.size > 1;
    for (const stage of stages) {
      const section = board.querySelector(`[data-stage="${stage}"]`);
      section.querySelector("[data-waiting]").replaceChildren(...queues.get(stage).map((place) => {
        const item = document.createElement("li");
        show(item, place, named);
        return item;
      }));
      const now = section.querySelector("[data-called]");
      const ticket = called.get(stage);
      if (ticket === undefined) {
        delete now.dataset.token;
        delete now.dataset.site;
        now.textContent = "\u2013";
      } else {
        show(now, ticket, named);
      }
    }
  }

  function read(event) {
    try {
      return JSON.parse(event.data);
    } catch (error) {
      console.error("unreadable board event", event.data, error);
      return null;
    }
  }

  const source = new EventSource("events");

  source.addEventListener("open", () => {
    board.dataset.connection = "live";
  });

  source.addEventListener("error", () => {
    board.dataset.connection = "lost";
  });

  source.addEventListener("snapshot", (event) => {
    const snapshot = read(event);
    if (!snapshot) return;
    called.clear();
    for (const stage of stages) queues.set(stage, []);
    for (const view of snapshot.stages) {
      if (!queues.has(view.stage)) continue;
      queues.set(view.stage, view.waiting.map((ticket, i) =>
        ({token: ticket.token, site: ticket.site, order: view.orders[i]})));
      if (view.called !== null) called.set(view.stage, view.called);
    }
    draw();
  });

  source.addEventListener("visit", (event) => {
    const visit = read(event);
    if (!visit) return;
    for (const [stage, places] of queues) {
      queues.set(stage, places.filter((place) => !same(place, visit)));
    }
    const queue = queues.get(visit.stage);
    if (queue) {
      const at = queue.findIndex((place) => place.order > visit.order);
      queue.splice(at === -1 ? queue.length : at, 0,
        {token: visit.token, site: visit.site, order: visit.order});
    }
    draw();
  });

  source.addEventListener("called", (event) => {
    const call = read(event);
    if (!call) return;
    called.set(call.stage, {token: call.token, site: call.site});
    draw();
  });
})();
