// The waiting-room screen: follows GET /opd/board/events and draws the three queues.
// The browser's EventSource reconnects by itself and sends the last event id, so the
// server sends what was missed; the top edge turns red while no stream is open. Each queue
// holds {token, order} in order: `order` is when the token joined it, so a token moved in
// later still takes its place.
"use strict";

(() => {
  const stages = ["inspection", "treatment", "release"];
  const queues = new Map(stages.map((stage) => [stage, []]));
  const called = new Map();
  const board = document.getElementById("board");

  function tile(token) {
    const item = document.createElement("li");
    item.textContent = String(token);
    item.dataset.token = String(token);
    return item;
  }

  function draw() {
    for (const stage of stages) {
      const section = board.querySelector(`[data-stage="${stage}"]`);
      section.querySelector("[data-waiting]")
        .replaceChildren(...queues.get(stage).map((place) => tile(place.token)));
      const now = called.get(stage);
      section.querySelector("[data-called]").textContent = now === undefined ? "\u2013" : String(now);
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
      queues.set(view.stage, view.waiting.map((token, i) => ({token, order: view.orders[i]})));
      if (view.called !== null) called.set(view.stage, view.called);
    }
    draw();
  });

  source.addEventListener("visit", (event) => {
    const visit = read(event);
    if (!visit) return;
    for (const [stage, places] of queues) {
      queues.set(stage, places.filter((place) => place.token !== visit.token));
    }
    const queue = queues.get(visit.stage);
    if (queue) {
      const at = queue.findIndex((place) => place.order > visit.order);
      queue.splice(at === -1 ? queue.length : at, 0, {token: visit.token, order: visit.order});
    }
    draw();
  });

  source.addEventListener("called", (event) => {
    const call = read(event);
    if (!call) return;
    called.set(call.stage, call.token);
    draw();
  });
})();
