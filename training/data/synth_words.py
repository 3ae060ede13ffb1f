"""The vocabulary of the bench corpus (training/data/synth.py): inline word lists, so
generating it needs no data files and no network. English content and function words,
sentence templates, names and places, six other languages, and boilerplate lines."""


def _w(s: str) -> list[str]:
    return s.split()


NOUNS = _w("""account act action activity adult advantage advice affair age agency agent agreement
air airport album alarm amount analyst angle animal answer apartment apple approach area argument
arm army arrival article artist aspect assistant attack attempt attention attitude audience author
authority autumn average award balance ball band bank bar base basis basket bath battery battle
beach bean beard bed bedroom bell belt bench benefit bicycle bill bird birth birthday blade blanket
block blood board boat body bone bonus book boot border bottle bottom boundary bowl box brain branch
brand bread break breakfast brick bridge brother budget building bullet bunch bus business butter
button cabin cabinet cable cake calendar call camera camp campaign canal candidate candle canvas cap
capital captain car card career carpet carrier cart case castle cat category cause ceiling cell
center century chain chair chairman challenge chamber champion chance channel chapter character
charge chart check cheek cheese chemical chest chicken chief chip chocolate choice church circle
citizen city claim class classroom clerk client climate clock closet cloth cloud club clue coach
coast coat code coffee coin collar colleague collection college colony color column combination
comfort command comment commission committee community company comparison competition complaint
component computer concept concern concert conclusion condition conference confidence conflict
connection consequence constant contact container content contest context contract contrast
contribution control conversation cook copy corner cost cottage council counter country county
couple courage course court cousin cover cow crack craft cream creature credit crew crime criticism
crop cross crowd crown cup cupboard curtain curve customer cycle damage dance danger date daughter
deadline deal debate debt decade decision deck degree delay delivery demand department deposit depth
description desert design desk detail device diagram diet difference difficulty dimension dinner
direction director disaster discipline discount discussion disease dish disk display distance
distinction district doctor document dog dollar door dot draft dragon drama drawer drawing dream
dress drink driver drop drum duck dust duty eagle ear earth economy edge editor effect effort egg
election element elephant elevator emotion emphasis employee employer engine engineer entrance entry
envelope environment episode error escape essay estate event evidence exam example exchange exercise
exhibition expert explanation expression extent eye fabric face fact factor factory failure faith
family fan farm farmer fashion father fault favor fear feather feature fee feeling fence festival
fever field fight figure file film finger fire firm fish flag flame flat flavor flight floor flower
focus folder forest fork form fortune forum foundation fountain frame freedom friend fruit fuel
function fund future gallery game gap garage garden gate gear gene generation gift girl glass glove
goal goat gold golf government grade grain grant graph grass grave ground group growth guard guest
guide guitar habit hair hall hammer hand handle harbor hat head health heart heat height helicopter
hero highway hill history hobby hole holiday home honey hook horizon horse hospital host hotel hour
house household housing hunter husband idea identity illness image impact impression improvement
incident income increase index indication individual industry infant influence initiative injury
insect insight inspector instance institution instruction instrument insurance intention interest
internet interview introduction invention investment invitation island issue item jacket jar job
joint joke journal journey judge juice jungle jury key keyboard kid kingdom kitchen kite knee knot
label lab labor ladder lake lamp land landscape language laptop laugh lawyer layer leader league
lecture leg legend lemon lesson letter level library license lid light limit line link lion lip list
literature load loan location lock log loss lunch machine magazine magnet mail manager manner map
margin mark market marriage mask master match material matter meal meaning measure meat medal
medicine meeting member memory menu message metal method middle midnight mile milk mind mine minister
minute mirror mission mistake mixture mode model moment money monitor monkey month mood moon morning
mother motion motor mountain mouth movement movie muscle museum music mystery nail name nation nature
neck needle neighbor nerve nest net network newspaper night noise noon note notebook notice novel
number nurse object objective occasion ocean offer office officer oil onion opinion opponent option
orange order organ organization origin outcome output oven owner package page pain paint painting
pair palace pan panel paper parent park parking part participant partner party passage passenger
passion password path patient pattern payment peace peak pen pencil penalty pension pepper percentage
period permission pet phase phone photo phrase piano picture piece pig pillow pilot pin pipe pitch
place plan plane planet plant plastic plate platform player pleasure plot pocket poem poet point
policy politics pool population port portion position post pot potato pound powder power practice
prayer preference premium presence president pressure price pride priest principle print priority
prison prize problem procedure process producer product profession professor profile profit program
progress project promise proof property proposal prospect protection protest province pump purchase
purpose puzzle quality quarter queen question queue rabbit race radio rain range rank rate ratio
reaction reader reality reason receipt recipe record recording reference region relation
relationship release religion report request requirement resident resource response responsibility
rest restaurant result review reward rhythm rice ride ring risk river road rock role roof room root
rope rose route routine row rule runner sail salad salary sale salt sample sand satellite sauce scale
scene schedule scheme scholar school science scientist score screen script sea search season seat
secret secretary section sector security seed selection sense sentence series servant service
session setting shadow shape share shelter shift ship shirt shock shoe shop shoulder show shower sign
signal silence silver singer sister site situation size skill skin sky sleep slice slope smell smile
smoke snake snow soap society sock soil soldier solution song soul sound soup source space speaker
speech speed spirit spot spring square stable staff stage stair stamp standard star start state
statement station statue status steak step stick stomach stone storage store storm story stranger
strategy stream street strength stress structure student studio style subject substance suburb
success sugar suggestion suit summer sun supermarket supply surface surgery surprise survey suspect
sweater symbol system table tail talent tank target task taste tax taxi tea teacher team tear
technique technology telephone television temperature temple tendency tennis tension tent term
territory test text theater theme theory thing thought thread threat throat ticket tiger timber time
title toe toilet tomato tone tongue tool topic total tour tourist towel tower town toy track trade
tradition traffic trail train trainer transition translation transport trap travel tray treasure
treatment tree trend trial triangle trick trip trouble truck trust truth tube tunnel turn tutor twin
type uncle union unit university user vacation valley value van variable variety vegetable vehicle
venue version vessel victim video view village violin virus visit visitor voice volume volunteer
vote wage wagon waiter wall wallet war warning watch water wave weakness wealth weapon weather
website wedding week weekend weight welcome wheel whistle window wine wing winner winter wire witness
word worker workshop world writer yard year youth zone""")

VERBS = _w("""accept achieve acquire adapt add adjust admire admit adopt advise affect afford agree aim
allow alter analyze announce annoy answer appear apply appreciate approach approve argue arrange
arrest arrive ask assess assign assist assume attach attack attempt attend attract avoid bake balance
behave belong benefit blame boil borrow bother bounce breathe brush burn calculate call cancel care
carry celebrate challenge change charge chase check cheer chew claim clean clear climb close collapse
collect combine comfort command comment communicate compare compete complain complete compose
concentrate concern conclude confirm connect consider consist construct consult consume contain
continue contribute convert convince cook copy correct cough count cover crash create cross cure
dance decide declare decorate decrease defend define delay delete deliver demand deny depend describe
deserve design desire destroy detect determine develop differ direct disappear discover discuss
dislike display distribute divide doubt dream dress earn educate elect eliminate embrace emerge
employ enable encourage end engage enhance enjoy enter entertain establish estimate evaluate examine
exchange excuse exist expand expect experience explain explore export express extend face fail
fasten favor fill finish fix float flood flow fold follow force form found frighten gather glance
glow govern grab greet guarantee guess guide handle happen harm hate head heat help hesitate hire
hope hunt hurry identify ignore illustrate imagine implement import impress improve include increase
indicate influence inform inherit injure insist inspect inspire install intend introduce invent
invest investigate invite involve iron join judge jump kick knock land last laugh launch learn list
listen live load locate look love maintain manage march mark marry match measure melt mention
migrate miss mix monitor move multiply murmur name need negotiate note notice observe obtain occupy
offer open operate order organize own paint park participate pass perform persuade pick place plant
play point polish possess post pour practice praise pray predict prefer prepare present preserve
press pretend prevent print proceed process produce promise promote protect prove provide publish
pull punish purchase push question race raise reach react realize receive recognize recommend record
recover reduce reflect refuse regard register reject relate relax release rely remain remember
remind remove repair repeat replace reply report represent request require rescue resist resolve
respect respond restore retain retire return reveal review reward risk roll rush sail save scan
score scratch search secure select separate serve settle share shift sign signal smell smile solve
sound spell spill start stay steer stop store stretch struggle study succeed suffer suggest supply
support suppose surprise surround survive suspect switch talk taste test thank touch tour trace
trade train transfer transform translate travel treat trust turn type underline unite update urge
use value vanish visit vote wait walk wander want warn wash waste watch welcome whisper wish wonder
work worry yell""")

ADJECTIVES = _w("""able absolute abstract academic acceptable accurate active actual additional adequate
afraid aggressive alive alternative amazing ancient angry annual anxious apparent appropriate
arbitrary artificial asleep attractive automatic available aware awful basic beautiful big bitter
blank blind blue bold boring brave brief bright brilliant broad brown busy calm capable careful
casual central certain cheap civil classic clean clever cold colorful comfortable commercial common
competitive complete complex comprehensive concrete confident conscious conservative considerable
consistent constant constructive contemporary continuous conventional cool correct creative critical
crucial cultural curious current cute daily dangerous dark dear decent deep defensive definite
delicate dense dependent desperate detailed different difficult digital direct dirty distant
distinct divine domestic dominant double dramatic dry dull dynamic eager early eastern easy economic
educational effective efficient elderly electric electronic elegant elementary emotional empty
enormous entire environmental equal essential eternal ethical eventual evident exact excellent
exciting exclusive existing exotic expensive experimental explicit external extra extreme fair
faithful false familiar famous fancy fantastic fashionable fast fatal favorite federal fierce final
financial fine firm fiscal flat flexible fluid foreign formal former fortunate fragile free frequent
fresh friendly front full functional fundamental funny gentle genuine giant global golden good
gradual grand grateful great green grey gross guilty handsome happy hard harsh healthy heavy helpful
hidden high historic holy honest horizontal hostile hot huge humble hungry ideal identical illegal
immediate immense implicit important impossible impressive incredible independent indirect
industrial inevitable informal initial inner innocent intense interesting internal international
invisible isolated junior keen kind large late lateral leading legal liberal light likely limited
linear liquid literary little local logical lonely long loose loud lovely low loyal lucky magic main
major manual marginal marine massive mature maximum meaningful mechanical medical mental mere mild
military minimal minor mobile moderate modern modest moral multiple musical mutual narrow national
native natural naval neat negative nervous neutral new nice noble normal notable nuclear numerous
obvious odd official old open opposite optimal oral ordinary organic original outer overall painful
pale parallel partial particular passive patient peaceful perfect permanent personal physical plain
pleasant polite political poor popular positive possible potential powerful practical precious
precise pretty previous primary prime private probable productive professional profound progressive
prominent proper proud public pure purple quick quiet radical random rapid rare raw ready real
reasonable recent red regional regular relative relevant reliable religious remarkable remote rich
rigid rival romantic rough round royal rural sacred safe scientific secondary secure selective
senior sensitive serious severe sharp short silent silly similar simple sincere single slight slow
small smart smooth social soft solar solid sophisticated southern spare spatial special specific
spiritual splendid stable static steady steep sticky stiff straight strange strategic strict strong
structural stupid subtle successful sudden sufficient suitable superior sure surprising suspicious
sweet swift symbolic technical temporary tender terrible thick thin tight tiny tough toxic
traditional transparent tremendous tropical true typical ugly ultimate unable uncertain unique
universal unknown unusual upper urban urgent useful usual vague valid valuable various vast verbal
vertical violent virtual visible visual vital vivid voluntary warm weak wealthy weekly weird western
wet white whole wide wild willing wise wonderful wooden worried yellow young""")

ADVERBS = _w("""absolutely accordingly actually almost already always annually apparently badly barely
briefly broadly carefully certainly clearly closely commonly completely constantly correctly
currently deeply definitely deliberately directly easily effectively entirely equally especially
essentially eventually exactly exclusively explicitly extremely fairly finally firmly formally
frankly freely frequently fully generally gently genuinely gradually greatly happily hardly heavily
highly honestly hopefully immediately increasingly indeed initially instead largely lately literally
locally loudly mainly merely mostly naturally nearly neatly necessarily normally notably obviously
occasionally officially often openly originally partly perfectly personally physically plainly
politely poorly possibly precisely presumably previously primarily probably promptly properly
quickly quietly rapidly rarely readily really recently regularly relatively repeatedly roughly
safely seldom seriously sharply shortly significantly silently similarly simply slightly slowly
smoothly softly solely sometimes soon specifically steadily strictly strongly subsequently suddenly
surely swiftly tightly today together truly typically ultimately unfortunately usually vaguely
virtually warmly widely wisely yesterday""")

FIRST = _w("""Adam Alice Amelia Andrew Anna Arthur Beatrice Benjamin Carla Carlos Charlotte Chloe Daniel
David Diana Edward Elena Elijah Emily Emma Ethan Fatima Felix Fiona Gabriel George Grace Hannah Harry
Helen Henry Hugo Isaac Isabel Jack Jacob James Jane Jasmine Jonas Joseph Julia Kevin Laura Leo Liam
Lily Lucas Lucy Maria Mark Martin Maya Michael Mina Nadia Nathan Noah Nora Oliver Olivia Omar Oscar
Paul Peter Priya Rachel Rosa Ruth Samuel Sara Sophia Simon Theo Thomas Victor Victoria Walter William
Yusuf Zoe""")
LAST = _w("""Adams Allen Baker Bennett Brooks Brown Campbell Carter Clark Collins Cook Cooper Davis Edwards
Evans Fisher Foster Garcia Gray Green Hall Harris Hayes Hill Hughes Jackson Jenkins Johnson Jones
Kelly Kim King Lee Lewis Miller Mitchell Moore Morgan Morris Murphy Nelson Parker Patel Perry
Phillips Powell Price Reed Roberts Robinson Rogers Ross Russell Sanders Scott Shaw Singh Smith
Stewart Sullivan Taylor Thompson Turner Walker Ward Watson White Williams Wilson Wood Wright
Young""")
PLACES = _w("""Boston Chicago Denver Dublin Edinburgh Glasgow Houston Leeds London Manchester Melbourne
Montreal Ottawa Portland Seattle Sydney Toronto Vancouver Brighton Oxford Cambridge Bristol Atlanta
Dallas Phoenix Auckland Cardiff Belfast""")
# accented loanwords (NFC): their NFD form is a duplicate only a normaliser can see
LOANWORDS = _w("""café résumé naïveté façade fiancé cliché protégé entrée crème soufflé rosé
doppelgänger piñata jalapeño décor attaché exposé communiqué""")

FUNC = {  # closed-class slots, repeated entries = higher weight
    "D": _w("the the the the the the this this that every each our their its his her one another any my your"),
    "Q": _w("the the the the the these those many some some several few all most our their other such both two"),
    "X": _w("of of of of in in in with with for for on on from by about under over between through without "
          "within across after before during near against among into toward around behind beyond along"),
    "C": _w("because although while when since whereas unless if before after once though"),
    "M": _w("can could will would should must may might"),
    "O": _w("we we they they you people"),
}

# '{X}' is a slot (see _slot_pools); everything else is literal. No template has a fixed run
# of 5+ words, so the grammar itself plants no shared shingles.
TEMPLATES = """{D} {A} {N} {S} {D} {N} {X} {Q} {P}.
{Q} {P} {M} {V} {D} {N} {R}.
{D} {N} {X} {D} {N} has {E} {Q} {A} {P}.
it is {A} that {Q} {P} {V} {X} {D} {N}.
{R}, {D} {N} {E} {D} {A} {N}, {C} {Q} {P} {V} {R}.
why {M} {Q} {P} {V} {D} {N} {X} {D} {N}?
how {A} is {D} {N} {X} {Q} {P}?
{D} {N} {M} be {E} {X} {D} {A} {N}.
{Q} {P} have {E} {D} {N}, {C} {D} {N} {S} {X} {Q} {A} {P}.
there are {A} {P} {X} {D} {N} that {V} with {Q} {P}.
to {V} {D} {N} is to {V} {Q} {P} {R}.
{H} {E} {D} {N} {X} {T} in {Y}.
what {A} {N} {S} {D} {N} {X} {D} {N}?
{O} {V} {D} {A} {N}, and {Q} {P} {V} {R}!
{D} {A} {N} and {D} {N} {V} {X} {Q} {P} {C} {D} {N} {S}.
{Q} {A} {P} {V} to {V} {D} {N}.
the {N} of {D} {N} {S} {R} {X} {D} {A} {N}.
{X} {D} {N}, {Q} {P} {M} {V} {Q} {A} {P}.
{C} {D} {N} {S} {A}, {O} {M} {V} {D} {N} {X} {D} {N}.
{H} from {T} {S} that {D} {L} {S} {R} {X} {Q} {P}.
about {Z} percent of {Q} {P} {V} {D} {N} {X} {D} {A} {N}.
{O} {R} {V} {Q} {P} that {V} {D} {N} {X} {Q} {P}.
{D} {L} {X} {D} {N} was {E} {R}.
{Q} {P} were {E} {X} {D} {A} {N} in {Y}.
{D} {N} is {A} and {A}, {C} {D} {N} is {R} {A}.
in {T}, {Q} {P} {V} {D} {N} with {D} {A} {N}.
{D} {N} {X} {H} {S} {Q} {P} {R}.
{Q} {P} {M} not {V} {D} {N} {C} {O} {V} {Q} {A} {P}.
{O} have {E} {Q} {P} for {Z} {P}, {C} {D} {N} {E} {R}.
does {D} {N} {V} {Q} {P} {X} {D} {N}?
{D} {A} {N} {S} {Q} {P}; {D} {N} {S} {D} {N}.
{R}, {Q} {P} {X} {D} {N} {V} {D} {A} {N}.
{D} {N} that {H} {E} {S} {A} {X} {Q} {P}.
{O} {M} {V} {D} {N} {R}, but {Q} {P} {V} {A}.
{Q} {P} {X} {T} {V} {D} {N} {X} {Q} {A} {P}.
{A} {P} {V} {D} {N}, {C} {D} {N} {M} {V} {R}.
{D} {N} will {V} {Q} {P} and {V} {D} {A} {N}.
{H} and {H} {E} {D} {A} {N} {X} {D} {N}.
is {D} {N} {A} enough to {V} {Q} {P}?
what a {A} {N} {D} {N} {S}!""".splitlines()

FOREIGN = {  # (function words, content words incl. accented ones)
    "de": ("""der die das und ist nicht ein eine einen dem den des zu mit sich auf für von im auch es an
als noch nach wie bei aus wenn nur sie er wir ich oder aber dass über unter vor zwischen durch gegen
ohne schon immer sehr hier dort wieder weil doch dann mehr kein keine diese dieser dieses jeder alle
viele wird werden wurde hat haben sind war waren kann können muss soll""",
           """Zeit Jahr Mensch Welt Leben Hand Tag Auge Frau Mann Kind Haus Stadt Arbeit Familie Schule
Geschichte Wasser Straße Größe Frage Beispiel Regierung Wirtschaft Gesellschaft Entwicklung Bedeutung
Möglichkeit Erfahrung Wissenschaft Unternehmen Bürger Mädchen Brücke Küche Tür Bücher Fenster Garten
Wald Berg Fluss Meer Himmel Sonne Nacht Morgen Abend Woche Monat Stunde Freund Nachbar Lehrer Schüler
Arzt Gespräch Zeitung Sprache Wörter Zukunft Vergangenheit Gefühl Glück Ärger Lösung Grund Erklärung
gehen kommen machen sagen sehen geben finden denken nehmen wissen glauben bleiben stehen liegen
sprechen schreiben lesen spielen arbeiten wohnen fahren laufen kaufen verkaufen bringen fragen
antworten verstehen erzählen zeigen hören öffnen schließen gewinnen verlieren fühlen lernen helfen
brauchen suchen beginnen groß klein alt neu gut schlecht schön wichtig schwer leicht lang kurz früh
spät richtig falsch möglich natürlich eigentlich wirklich ziemlich vielleicht heute gestern später
zusammen genug überall gemütlich fröhlich schnell langsam ruhig laut häufig ähnlich gefährlich
schwierig deutlich völlig bereits plötzlich gegenüber während übrigens Straßenbahn Bahnhof Fahrrad
Urlaub Wetter Frühstück Mittagessen Geschäft Rathaus Kirche Krankenhaus Schlüssel Gebäude"""),
    "fr": ("""le la les un une des de du et est que qui ne pas il elle nous vous ils elles on je dans
pour avec sur par plus ce cette ces son sa ses leur leurs mais ou où donc car aussi très bien tout
tous toutes sans sous entre chez comme quand depuis déjà encore toujours jamais été être avoir fait
sont était avait peut doit va ont""",
           """temps année monde vie homme femme enfant jour main maison ville travail famille école
histoire eau rue pays question exemple gouvernement société développement possibilité expérience
science entreprise père mère frère sœur ami voisin professeur élève médecin journal langue mot avenir
passé sentiment bonheur raison solution fenêtre porte jardin forêt montagne rivière mer ciel soleil
nuit matin soir semaine mois heure café gâteau fromage boulangerie hôpital église gare vélo voyage
château fête début fin lumière idée pensée aller venir faire dire voir donner trouver penser prendre
savoir croire rester parler écrire lire jouer travailler habiter acheter vendre apporter demander
répondre comprendre raconter montrer entendre ouvrir fermer gagner perdre apprendre aider chercher
commencer grand petit vieux nouveau bon mauvais beau important difficile facile long court tôt tard
vrai faux possible naturel vraiment aujourd'hui demain hier ensemble partout rapide lent calme élevé
général déçu français européen éducation génération réalité qualité sécurité sûr pourquoi
beaucoup"""),
    "es": ("""el la los las un una unos unas de del y es que en no se lo le por con para su sus al pero
como más muy también ya todo todos este esta estos estas ese esa hay está están son era fue ser estar
tiene tienen puede sin sobre entre cuando donde porque desde hasta nos yo él ella nosotros ellos
mi""",
           """tiempo año mundo vida hombre mujer niño día mano casa ciudad trabajo familia escuela
historia agua calle país pregunta ejemplo gobierno sociedad desarrollo posibilidad experiencia
ciencia empresa padre madre hermano hermana amigo vecino maestro alumno médico periódico idioma
palabra futuro pasado sentimiento felicidad razón solución ventana puerta jardín bosque montaña río
mar cielo sol noche mañana tarde semana mes hora café pan queso panadería hospital iglesia estación
bicicleta viaje castillo fiesta canción corazón ir venir hacer decir ver dar encontrar pensar tomar
saber creer quedar hablar escribir leer jugar trabajar vivir comprar vender traer preguntar
responder entender contar mostrar oír abrir cerrar ganar perder aprender ayudar buscar empezar grande
pequeño viejo nuevo bueno malo bonito importante difícil fácil largo corto temprano verdadero falso
posible natural realmente quizás hoy ayer juntos rápido lento tranquilo después además según años
señor señora niña compañía montañas información educación población música lápiz árbol último
siempre nunca"""),
    "it": ("""il lo la i gli le un uno una di del della dei delle e è che non per con su da in al alla
nel nella come più anche ma o se ci si mi ti questo questa quello quella sono era essere avere ha
hanno molto tutto tutti già ancora sempre mai dove quando perché tra fra senza sotto dopo prima così
poi noi voi loro lui lei io""",
           """tempo anno mondo vita uomo donna bambino giorno mano casa città lavoro famiglia scuola
storia acqua strada paese domanda esempio governo società sviluppo possibilità esperienza scienza
azienda padre madre fratello sorella amico vicino maestro studente medico giornale lingua parola
futuro passato sentimento felicità ragione soluzione finestra porta giardino bosco montagna fiume
mare cielo sole notte mattina sera settimana mese ora caffè pane formaggio ospedale chiesa stazione
bicicletta viaggio castello festa canzone cuore andare venire fare dire vedere dare trovare pensare
prendere sapere credere restare parlare scrivere leggere giocare lavorare abitare comprare vendere
portare chiedere rispondere capire raccontare mostrare sentire aprire chiudere vincere perdere
imparare aiutare cercare cominciare grande piccolo vecchio nuovo buono cattivo bello importante
difficile facile lungo corto presto vero falso possibile naturale davvero forse oggi domani ieri
insieme veloce lento tranquillo perciò però università qualità verità gioventù libertà ciò
gli"""),
    "pt": ("""o a os as um uma uns umas de do da dos das e é que em no na nos nas não se por com para
seu sua mas como mais muito também já todo todos este esta isso isto esse essa há está estão são era
foi ser estar tem têm pode sem sobre entre quando onde porque desde até nós eu você ele ela eles elas
meu""",
           """tempo ano mundo vida homem mulher criança dia mão casa cidade trabalho família escola
história água rua país pergunta exemplo governo sociedade desenvolvimento possibilidade experiência
ciência empresa pai mãe irmão irmã amigo vizinho professor aluno médico jornal língua palavra futuro
passado sentimento felicidade razão solução janela porta jardim floresta montanha rio mar céu sol
noite manhã tarde semana mês hora café pão queijo padaria hospital igreja estação bicicleta viagem
castelo festa canção coração ir vir fazer dizer ver dar encontrar pensar tomar saber acreditar ficar
falar escrever ler jogar trabalhar morar comprar vender trazer perguntar responder entender contar
mostrar ouvir abrir fechar ganhar perder aprender ajudar procurar começar grande pequeno velho novo
bom mau bonito importante difícil fácil longo curto cedo verdadeiro falso possível natural realmente
talvez hoje amanhã ontem juntos rápido lento tranquilo depois então ação informação educação
população coisa lições irmãos nações"""),
    "nl": ("""de het een en van in is dat die niet te op met voor zijn er aan ook als bij maar om nog dan
uit wat naar tot door over zo hij zij wij ik jij hun ze we al wel heel meer geen deze dit was waren
heeft hebben wordt worden kan kunnen moet zal zou omdat hoe waar wanneer tussen zonder tegen
onder""",
           """tijd jaar wereld leven man vrouw kind dag hand huis stad werk familie school geschiedenis
water straat land vraag voorbeeld regering maatschappij ontwikkeling mogelijkheid ervaring
wetenschap bedrijf vader moeder broer zus vriend buurman leraar leerling dokter krant taal woord
toekomst verleden gevoel geluk reden oplossing raam deur tuin bos berg rivier zee hemel zon nacht
ochtend avond week maand uur koffie brood kaas bakkerij ziekenhuis kerk station fiets reis kasteel
feest lied hart gaan komen maken zeggen zien geven vinden denken nemen weten geloven blijven praten
schrijven lezen spelen werken wonen kopen verkopen brengen vragen antwoorden begrijpen vertellen
tonen horen openen sluiten winnen verliezen leren helpen zoeken beginnen groot klein oud nieuw goed
slecht mooi belangrijk moeilijk makkelijk kort vroeg laat vals mogelijk natuurlijk echt misschien
vandaag morgen gisteren samen snel langzaam rustig gezellig eigenlijk altijd nooit vaak daarom
gebruiken uitgebreid ijs vrijheid gemeente zorgvuldig eenvoudig bijzonder duidelijk onderzoek
zeker"""),
}
LOREM = ("Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt "
          "ut labore et dolore magna aliqua. Ut enim ad minim veniam, quis nostrud exercitation.")
HEADERS = ("Posted by {f} {l} on {m} {d}, {y}.", "Updated on {m} {d}, {y} by the editors.",
            "This article first appeared in the {t} weekly digest.")
FOOTERS = ("Share this story with your friends and family.", "Read more articles like this on our site.",
            "Copyright {y} {l} Media. All rights reserved.", "Comments are closed for this post.")
MONTHS = _w("January February March April May June July August September October November December")
