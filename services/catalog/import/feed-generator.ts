import { csvField } from "./csv-parser.js";
import { DEMO_CATEGORIES } from "./demo-categories.js";

/** A small, fast, seedable PRNG (mulberry32): the same seed gives the same feed. */
export function createRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface Vocabulary {
  nouns: string[];
  materials: string[];
  /** Price range in major units. */
  price: [number, number];
}

const LEAF_VOCABULARY: Record<string, Vocabulary> = {
  cookware: {
    nouns: ["Frying Pan", "Saucepan", "Kettle", "Wok", "Dutch Oven", "Stockpot"],
    materials: ["Cast Iron", "Copper", "Stainless Steel", "Ceramic"],
    price: [15, 220],
  },
  tableware: {
    nouns: ["Plate Set", "Mug", "Bowl", "Teapot", "Glass Set", "Serving Tray"],
    materials: ["Porcelain", "Stoneware", "Glass", "Bamboo"],
    price: [6, 90],
  },
  "kitchen-appliances": {
    nouns: ["Blender", "Toaster", "Coffee Grinder", "Espresso Machine", "Stand Mixer"],
    materials: ["Brushed Steel", "Matte Black", "White"],
    price: [25, 650],
  },
  "living-room": {
    nouns: ["Sofa", "Armchair", "Coffee Table", "Floor Lamp", "Bookshelf", "Rug"],
    materials: ["Oak", "Walnut", "Linen", "Velvet", "Leather"],
    price: [40, 1800],
  },
  "office-furniture": {
    nouns: ["Desk", "Office Chair", "Monitor Stand", "Filing Cabinet"],
    materials: ["Oak", "Steel", "Mesh", "Birch"],
    price: [30, 900],
  },
  bedroom: {
    nouns: ["Bed Frame", "Nightstand", "Wardrobe", "Pillow", "Duvet"],
    materials: ["Pine", "Cotton", "Wool", "Walnut"],
    price: [20, 1500],
  },
  jackets: {
    nouns: ["Rain Jacket", "Down Jacket", "Softshell Jacket", "Windbreaker"],
    materials: ["Gore-Tex", "Nylon", "Recycled Polyester"],
    price: [45, 420],
  },
  shirts: {
    nouns: ["Oxford Shirt", "T-Shirt", "Flannel Shirt", "Polo Shirt"],
    materials: ["Cotton", "Linen", "Merino"],
    price: [12, 120],
  },
  accessories: {
    nouns: ["Scarf", "Beanie", "Leather Belt", "Wallet", "Gloves"],
    materials: ["Wool", "Leather", "Cashmere"],
    price: [10, 160],
  },
  running: {
    nouns: ["Running Tights", "Running Vest", "Hydration Belt", "Headlamp"],
    materials: ["Lightweight", "Reflective", "Breathable"],
    price: [15, 140],
  },
  "running-shoes": {
    nouns: ["Trail Running Shoe", "Road Running Shoe", "Racing Flat"],
    materials: ["Mesh", "Knit", "Carbon Plate"],
    price: [60, 260],
  },
  camping: {
    nouns: ["Tent", "Sleeping Bag", "Camping Stove", "Backpack", "Lantern"],
    materials: ["Ultralight", "Ripstop", "Titanium"],
    price: [20, 700],
  },
  cycling: {
    nouns: ["Bike Helmet", "Bike Light", "Saddle", "Cycling Jersey", "Pump"],
    materials: ["Carbon", "Aluminium", "Lycra"],
    price: [15, 350],
  },
  audio: {
    nouns: ["Headphones", "Bluetooth Speaker", "Earbuds", "Turntable", "Soundbar"],
    materials: ["Wireless", "Noise Cancelling", "Studio"],
    price: [20, 900],
  },
  computers: {
    nouns: ["Laptop Stand", "Mechanical Keyboard", "Wireless Mouse", "USB-C Hub", "Monitor"],
    materials: ["Aluminium", "Compact", "Ergonomic"],
    price: [15, 1400],
  },
  phones: {
    nouns: ["Phone Case", "Charger", "Power Bank", "Screen Protector"],
    materials: ["Silicone", "Fast", "Tempered Glass"],
    price: [8, 120],
  },
  tools: {
    nouns: ["Pruning Shears", "Garden Hose", "Spade", "Rake", "Wheelbarrow"],
    materials: ["Steel", "Ash Wood", "Expandable"],
    price: [8, 240],
  },
  plants: {
    nouns: ["Olive Tree", "Monstera", "Herb Kit", "Succulent Set", "Lavender"],
    materials: ["Potted", "Organic", "Dwarf"],
    price: [5, 150],
  },
};

const BRANDS = [
  "Nordhaus",
  "Alpenwerk",
  "Bluefield",
  "Kestrel",
  "Lumen & Co",
  "Fjordline",
  "Harbor",
  "Oakridge",
  "Vela",
  "Copperleaf",
  "Tidewater",
  "Summit",
];
const ADJECTIVES = [
  "Classic",
  "Essential",
  "Premium",
  "Compact",
  "Heritage",
  "Everyday",
  "Pro",
  "Modern",
  "Rustic",
  "Urban",
];
const COLORS = ["black", "white", "grey", "navy", "olive", "red", "sand", "forest green", "copper"];
const SENTENCES = [
  "Designed for daily use and built to last.",
  "Easy to clean and simple to store.",
  "Backed by a two-year warranty.",
  "Made with responsibly sourced materials.",
  "A favourite of reviewers for its balance of weight and strength.",
  "Ships in plastic-free packaging.",
  "Pairs well with the rest of the collection.",
  "Tested in real-world conditions by our team.",
];
const CURRENCIES: [string, number][] = [
  ["EUR", 0.7],
  ["USD", 0.15],
  ["GBP", 0.1],
  ["JPY", 0.05],
];

export interface GeneratedRow {
  sku: string;
  name: string;
  description: string;
  price: string;
  currency: string;
  category: string;
  active: boolean;
  attributes: Record<string, string>;
  stock: number;
}

const LEAVES = DEMO_CATEGORIES.map(([slug]) => slug).filter((slug) => LEAF_VOCABULARY[slug]);

/** Row `index` of the feed for `seed`; independent of the rows before it. */
export function generateRow(index: number, seed: number): GeneratedRow {
  const random = createRandom(seed * 1_000_003 + index);
  const pick = <T>(list: readonly T[]) => list[Math.floor(random() * list.length)]!;
  const category = pick(LEAVES);
  const vocab = LEAF_VOCABULARY[category]!;
  const noun = pick(vocab.nouns);
  const material = pick(vocab.materials);
  const brand = pick(BRANDS);
  const name = `${brand} ${pick(ADJECTIVES)} ${material} ${noun}`;
  const color = pick(COLORS);
  const first = Math.floor(random() * SENTENCES.length);
  const second = (first + 1 + Math.floor(random() * (SENTENCES.length - 1))) % SENTENCES.length;
  const description = [
    `The ${name.toLowerCase()} in ${color}.`,
    SENTENCES[first],
    SENTENCES[second],
    random() < 0.5 ? `Part of the ${brand} ${category.replace(/-/g, " ")} range.` : "",
  ]
    .filter(Boolean)
    .join(" ");
  let roll = random();
  let currency = "EUR";
  for (const [code, share] of CURRENCIES) {
    if (roll < share) {
      currency = code;
      break;
    }
    roll -= share;
  }
  const [low, high] = vocab.price;
  const major = Math.floor(low + random() * (high - low));
  const price =
    currency === "JPY" ? String(major * 150) : `${major}.${pick(["99", "95", "49", "00"])}`;
  return {
    sku: `${category.slice(0, 3).toUpperCase()}-${seed}-${String(index).padStart(7, "0")}`,
    name,
    description,
    price,
    currency,
    category,
    active: random() >= 0.05,
    attributes: { color, material: material.toLowerCase(), brand },
    stock: random() < 0.1 ? 0 : Math.floor(random() * 200),
  };
}

export const CSV_COLUMNS = [
  "sku",
  "name",
  "description",
  "price",
  "currency",
  "category",
  "active",
  "attributes",
  "stock",
] as const;

export function formatRow(row: GeneratedRow, format: "csv" | "ndjson"): string {
  if (format === "ndjson") return JSON.stringify(row);
  return [
    row.sku,
    row.name,
    row.description,
    row.price,
    row.currency,
    row.category,
    String(row.active),
    JSON.stringify(row.attributes),
    String(row.stock),
  ]
    .map(csvField)
    .join(",");
}
